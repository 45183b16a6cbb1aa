"""nfcpay: hand someone a temporary, usage-limited payment grant over NFC.

The package is cut by domain: ``money`` and ``crypto`` are shared building blocks,
``records`` is the NDEF wire format, ``transport`` is the only package that talks to nfcpy,
``server`` is the payment server, ``client`` reaches it over HTTP, ``terminals`` holds the user,
target and merchant flows, and ``cli`` is the thin click layer on top.
"""

from __future__ import annotations

from nfcpay.errors import NfcPayError
from nfcpay.money import Money, parse_amount

__version__ = "0.1.0"

__all__ = ["Money", "NfcPayError", "__version__", "parse_amount"]
