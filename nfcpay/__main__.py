"""``python -m nfcpay`` runs the command-line interface."""

from nfcpay.cli import main

main()
