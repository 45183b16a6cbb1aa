"""The three terminal roles (user, target, merchant) as flows independent of the CLI.

Each flow takes a :class:`~nfcpay.terminals.home.TerminalHome` (this terminal's own state),
a :class:`~nfcpay.client.PaymentClient` where it talks to the server, and an NFC reader from
:mod:`nfcpay.transport` where it talks to another terminal.
"""
