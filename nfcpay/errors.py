"""The whole nfcpay exception tree.

::

    NfcPayError                      root: every error nfcpay raises on purpose
    ├── ConfigError                  bad settings, home directory or key file
    ├── MoneyError                   an amount that cannot be parsed or mixed
    ├── AmountRefused                an entered amount a terminal refuses before signing
                                     or charging it (over the merchant's maximum)
    ├── RecordError                  the NDEF wire format
    │   ├── DecodeError              bad bytes from the wire
    │   └── EncodeError              a value that cannot be put on the wire
    ├── ProfileError                 a broken firmware profile file
    ├── TransportError               the NFC link (transport/ and the terminals' conversations)
    │   ├── ReaderNotFound
    │   ├── ReaderAccessDenied
    │   ├── ReaderBusy               another nfcpay process holds the reader
    │   ├── UnsupportedByReader      e.g. listening on a poll-only ACR122U
    │   ├── LinkLost
    │   ├── ExchangeTimeout
    │   └── ProtocolViolation        garbage or an unexpected record mid-exchange
    ├── PaymentError                 a payment rule said no (server side)
    │   ├── Declined                 an authorization declined, with a decline code
    │   ├── NotFound
    │   ├── Forbidden
    │   ├── InvalidRequest
    │   ├── AuthenticationFailed
    │   ├── IdempotencyConflict
    │   ├── Conflict                 the request clashes with current state
    │   ├── RateLimited              429: too many requests; ``retry_after_s``
    │   ├── DatabaseUnavailable      503: nothing was written; retry later
    │   └── DatabaseOutcomeUnknown   503: lost during COMMIT; retry with the same key
    └── ApiError                     the client's view of a failed server call
        └── ServerUnavailable        connection refused, timeout, 5xx: retryable

Errors carry machine-readable fields (``code``, ``retryable``) the way payment SDKs do,
so callers branch on data, not on message text.
"""

from __future__ import annotations


class NfcPayError(Exception):
    """Root of every error nfcpay raises deliberately."""

    code: str = "error"
    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigError(NfcPayError):
    code = "config_error"


class MoneyError(NfcPayError, ValueError):
    code = "bad_amount"


class AmountRefused(NfcPayError):
    """An amount the target's person entered that a terminal refuses before it is signed or
    charged: over the merchant's maximum, or not the fixed amount the merchant asks. The
    person's input to fix (CLI exit 2), never sent to the server."""

    code = "amount_refused"


class RecordError(NfcPayError):
    code = "record_error"


class DecodeError(RecordError):
    code = "decode_error"


class EncodeError(RecordError):
    code = "encode_error"


class ProfileError(NfcPayError):
    code = "profile_error"


class TransportError(NfcPayError):
    code = "transport_error"


class ReaderNotFound(TransportError):
    code = "reader_not_found"


class ReaderAccessDenied(TransportError):
    code = "reader_access_denied"


class ReaderBusy(TransportError):
    code = "reader_busy"


class UnsupportedByReader(TransportError):
    code = "unsupported_by_reader"


class LinkLost(TransportError):
    code = "link_lost"
    retryable = True


class ExchangeTimeout(TransportError):
    code = "exchange_timeout"
    retryable = True


class ProtocolViolation(TransportError):
    code = "protocol_violation"


class PaymentError(NfcPayError):
    """A payment rule refused a request. ``status`` is the HTTP status the server answers."""

    code = "payment_error"
    status: int = 400


class Declined(PaymentError):
    """An authorization was declined; ``code`` is the machine-readable decline code."""

    code = "declined"
    status = 402


class NotFound(PaymentError):
    code = "not_found"
    status = 404


class Forbidden(PaymentError):
    code = "forbidden"
    status = 403


class InvalidRequest(PaymentError):
    """A request that breaks a rule; ``field`` names the offending request field, if one does."""

    code = "invalid_request"
    status = 422

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class AuthenticationFailed(PaymentError):
    code = "authentication_failed"
    status = 401


class IdempotencyConflict(PaymentError):
    code = "idempotency_conflict"
    status = 409


class Conflict(PaymentError):
    """The request clashes with the current state (e.g. a dormant source, a known key)."""

    code = "conflict"
    status = 409


class RateLimited(PaymentError):
    """Too many requests (or failed authentications) from one terminal; retry later."""

    code = "rate_limited"
    status = 429
    retryable = True

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DatabaseUnavailable(PaymentError):
    """The database could not be reached, was locked or refused writes. The request's
    transaction did not commit, so any request (even a non-idempotent one) may be retried."""

    code = "database_unavailable"
    status = 503
    retryable = True
    retry_after_s = 1


class DatabaseOutcomeUnknown(PaymentError):
    """The database connection was lost during COMMIT (the database died or failed over), so
    the request may or may not have been saved. Unlike :class:`DatabaseUnavailable`, only a
    request that carries its idempotency key may be repeated blindly: the repeat gets the
    stored answer if the first one was saved, and is decided afresh if not."""

    code = "database_outcome_unknown"
    status = 503
    retryable = True
    retry_after_s = 1


class ApiError(NfcPayError):
    """A server call failed; ``status`` is the HTTP status (0 when none arrived) and ``field``
    the request field a validation error names."""

    code = "api_error"
    #: Seconds the server asked the caller to wait (``Retry-After`` of a 429/503), if any.
    retry_after_s: float | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int = 0,
        request_id: str | None = None,
        retryable: bool | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.request_id = request_id
        self.field = field
        if retryable is not None:
            self.retryable = retryable


class ServerUnavailable(ApiError):
    code = "server_unavailable"
    retryable = True
