"""Services, cut by domain. Each function takes an open transaction and raises only
:class:`nfcpay.errors.PaymentError` subclasses for refusals; the routes map those to HTTP."""
