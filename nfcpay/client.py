"""The HTTP client terminals use to reach the payment server.

Every request is signed with the terminal's Ed25519 key (the signed bytes are
:func:`nfcpay.crypto.request_message`; the server checks them in :mod:`nfcpay.server.auth`);
payments and refunds carry an ``Idempotency-Key`` (generated when the caller gives none) so a
retry can never charge twice.

Retry policy (only what is safe): a connection that could not be opened is retried for every
call; a timeout, a 5xx, 429 or a 409 "in progress" only for idempotent calls (GET, PATCH,
revoke, and payments/refunds, which carry their idempotency key); a 503
``database_unavailable`` for every call, because the server sends it only when nothing was
written. Retries back off with jitter (at least the server's ``Retry-After``), are bounded by
``max_retries``, and are signed afresh (new timestamp and nonce).

TLS: an ``https://`` server is verified against the system CAs, or against ``verify`` (a CA
file path, an ``ssl.SSLContext``; the CLI passes ``nfcpay --ca``/``NFCPAY_CA`` here). A
failed verification is an :class:`ApiError` with code ``certificate_verify_failed`` and is
never retried.

Every method returns the server's JSON as plain ``dict``/``list`` values, exactly the shapes of
the API contract; list endpoints return the list itself. Failures raise
:class:`nfcpay.errors.ApiError` (``code``, ``status``, ``message``) or its subclass
:class:`nfcpay.errors.ServerUnavailable` when the server could not be reached or failed.
A *declined* payment is not an error: ``authorize_payment`` returns it with
``status == "declined"`` and a ``decline_code``.
"""

from __future__ import annotations

import json
import random
import secrets
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nfcpay import crypto
from nfcpay.errors import ApiError, ConfigError, ServerUnavailable

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_RETRIES = 3
_BACKOFF_BASE_S = 0.1
_BACKOFF_MAX_S = 2.0
_RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
#: The server's 404 code for "no payment with these means so far" (GET /v1/presentations).
NO_PAYMENT_YET = "no_payment_yet"
#: Raised by :meth:`PaymentClient.presentation_outcome` against a server without that route.
SERVER_TOO_OLD = "server_too_old"

Json = dict[str, Any]


def _drop_none(values: Mapping[str, Any]) -> Json:
    return {k: v for k, v in values.items() if v is not None}


def _iso(moment: datetime | str | None) -> str | None:
    return moment.isoformat() if isinstance(moment, datetime) else moment


class PaymentClient:
    """A signed connection to the payment server for one registered terminal.

    ``transport`` is any ``httpx.BaseTransport`` (e.g. ``httpx.MockTransport``); ``http`` a
    ready ``httpx.Client`` such as Starlette's ``TestClient(app)`` for in-process tests.
    """

    def __init__(
        self,
        base_url: str,
        terminal_id: str,
        private_key: Ed25519PrivateKey,
        *,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        verify: str | Path | ssl.SSLContext | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.terminal_id = terminal_id
        self._key = private_key
        self._prefix = urlsplit(self.base_url).path.rstrip("/")
        self._timeout = timeout
        self._max_retries = max_retries
        #: How a retry waits out its back-off (a test passes one that records the waits).
        self._sleep = sleep
        #: What request timestamps are read from (a test shares its server's fake clock).
        self.clock: Callable[[], float] = time.time
        self._owns_http = http is None
        self._http = http or httpx.Client(transport=transport or _default_transport(verify))

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __del__(self) -> None:
        # A client dropped without close() must not leak its pooled sockets.
        if getattr(self, "_owns_http", False):
            self._http.close()

    def __enter__(self) -> PaymentClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- terminals ----------------------------------------------------------------------

    @classmethod
    def register_terminal(
        cls,
        base_url: str,
        private_key: Ed25519PrivateKey,
        *,
        role: str,
        label: str,
        merchant: Mapping[str, Any] | None = None,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        verify: str | Path | ssl.SSLContext | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> tuple[PaymentClient, Json]:
        """Register ``private_key``'s public half; return a client for the new terminal and
        the server's answer (``terminal_id``, ``merchant_id`` for merchants, ...)."""
        client = cls(
            base_url,
            "new",
            private_key,
            transport=transport,
            http=http,
            timeout=timeout,
            verify=verify,
            sleep=sleep,
        )
        body = _drop_none(
            {
                "role": role,
                "label": label,
                "public_key": crypto.b64e(crypto.public_key_bytes(private_key)),
                "merchant": dict(merchant) if merchant is not None else None,
            }
        )
        try:
            answer = client._call("POST", "/v1/terminals", body, retry_unsafe=False)
        except BaseException:
            client.close()
            raise
        client.terminal_id = answer["terminal_id"]
        return client, answer

    def me(self) -> Json:
        return self._call("GET", "/v1/terminals/me")

    def terminal_profile(self, terminal_id: str) -> Json:
        """Another terminal's label, role, merchant name and key fingerprint (NotFound unless
        this terminal is a party with it)."""
        return self._call("GET", f"/v1/terminals/{quote(terminal_id, safe='')}/profile")

    def merchant_profile(self, merchant_id: str) -> Json:
        """A merchant terminal's profile, by merchant id (as :meth:`terminal_profile`)."""
        return self._call("GET", f"/v1/merchants/{quote(merchant_id, safe='')}/profile")

    # --- funding sources ------------------------------------------------------------------

    def add_card(self, number: str, expiry: str, limit: int, currency: str) -> Json:
        body = {"kind": "card", "number": number, "expiry": expiry, "limit": limit}
        return self._call("POST", "/v1/funding-sources", {**body, "currency": currency})

    def add_wallet(self, balance: int, currency: str) -> Json:
        body = {"kind": "wallet", "balance": balance, "currency": currency}
        return self._call("POST", "/v1/funding-sources", body)

    def add_bank(self, balance: int, currency: str) -> Json:
        body = {"kind": "bank", "balance": balance, "currency": currency}
        return self._call("POST", "/v1/funding-sources", body)

    def list_sources(self) -> list[Json]:
        return list(self._call("GET", "/v1/funding-sources")["sources"])

    def set_source_status(self, source_id: str, status: str) -> Json:
        return self._call("PATCH", f"/v1/funding-sources/{source_id}", {"status": status})

    # --- grants --------------------------------------------------------------------------

    def issue_grant(
        self,
        source_id: str,
        allowed_terminals: Sequence[str],
        *,
        amount_cap: int,
        currency: str,
        max_uses: int = 1,
        per_use_cap: int | None = None,
        valid_from: datetime | str | None = None,
        valid_until: datetime | str | None = None,
        purposes: Sequence[str] | None = None,
        regions: Sequence[str] | None = None,
        merchants: Sequence[str] | None = None,
        bill_id: str | None = None,
        tap_fingerprint: bytes | None = None,
        allowance: Mapping[str, Any] | None = None,
    ) -> Json:
        """Returns ``{"grant": {...}, "auth_code": "<b64url>"}``; the auth code comes only once.

        ``allowance``: ``{"period": "day"|"week"|"month", "amount", "time_zone"}``, a cap that
        renews every period, counted in that IANA zone.

        ``tap_fingerprint``: issued to the one terminal that tapped, whose hello claimed this
        key fingerprint. The grant then waits for :meth:`confirm_grant`, and the answer adds
        ``"tapped": {"terminal_id", "label", "key_fingerprint"}`` as the server knows them."""
        rights = _drop_none(
            {
                "amount_cap": amount_cap,
                "max_uses": max_uses,
                "per_use_cap": per_use_cap,
                "valid_from": _iso(valid_from),
                "valid_until": _iso(valid_until),
                "purposes": list(purposes) if purposes is not None else None,
                "regions": list(regions) if regions is not None else None,
                "merchants": list(merchants) if merchants is not None else None,
                "allowance": dict(allowance) if allowance is not None else None,
            }
        )
        body = _drop_none(
            {
                "source_id": source_id,
                "allowed_terminals": list(allowed_terminals),
                "currency": currency,
                "rights": rights,
                "bill_id": bill_id,
                "tap_fingerprint": tap_fingerprint.hex() if tap_fingerprint else None,
            }
        )
        return self._call("POST", "/v1/grants", body)

    def list_grants(self) -> list[Json]:
        return list(self._call("GET", "/v1/grants")["grants"])

    def get_grant(self, grant_id: str) -> Json:
        return self._call("GET", f"/v1/grants/{grant_id}")

    def revoke_grant(self, grant_id: str) -> Json:
        return self._call("POST", f"/v1/grants/{grant_id}/revoke", {}, idempotent=True)

    def confirm_grant(self, grant_id: str) -> Json:
        """The owner confirms the terminal a grant was handed to in a tap."""
        return self._call("POST", f"/v1/grants/{grant_id}/confirm", {}, idempotent=True)

    # --- bills ---------------------------------------------------------------------------

    def open_bill(self, *, total: int, currency: str, mode: str = "exact") -> Json:
        """Open a group bill this (target) terminal collects; the answer's ``bill_id`` is the
        server's. Not retried after a timeout: a second try would open a second bill."""
        body = {"total": total, "currency": currency, "mode": mode}
        return self._call("POST", "/v1/bills", body)

    def get_bill(self, bill_id: str) -> Json:
        """One of this terminal's bills with its members (the grants naming it)."""
        return self._call("GET", f"/v1/bills/{bill_id}")

    # --- payments ------------------------------------------------------------------------

    def authorize_payment(
        self,
        *,
        amount: int,
        currency: str,
        challenge: bytes,
        means: Mapping[str, Any],
        purpose: str | None = None,
        bill_id: str | None = None,
        split_mode: str = "exact",
        idempotency_key: str | None = None,
    ) -> Json:
        """Approved or declined, both as a dict (``status``); retries reuse the same key."""
        body = _drop_none(
            {
                "amount": amount,
                "currency": currency,
                "purpose": purpose,
                "challenge": crypto.b64e(challenge),
                "means": dict(means),
                "bill_id": bill_id,
                "split_mode": split_mode,
            }
        )
        key = idempotency_key or new_idempotency_key()
        return self._call("POST", "/v1/payments", body, idempotency_key=key)

    def merchant_categories(self) -> Json:
        """This merchant's categories (primary first) and every logged change of them."""
        return self._call("GET", "/v1/merchants/me/categories")

    def set_merchant_categories(self, categories: Sequence[str]) -> Json:
        """Replace this merchant's categories (primary first); the server logs the change. A
        retry is safe: setting the same set again changes and logs nothing."""
        body = {"categories": list(categories)}
        return self._call("PUT", "/v1/merchants/me/categories", body, idempotent=True)

    def list_payments(self) -> list[Json]:
        return list(self._call("GET", "/v1/payments")["payments"])

    def get_payment(self, payment_id: str) -> Json:
        return self._call("GET", f"/v1/payments/{payment_id}")

    def presentation_outcome(self, merchant_id: str, challenge: bytes) -> Json | None:
        """The payment made with the means this terminal presented for ``merchant_id``'s
        ``challenge`` (the nonce), or None: none so far (the merchant may still send them).

        Raises ApiError ``server_too_old`` when the server cannot be asked this yet.
        """
        path = f"/v1/presentations/{quote(merchant_id, safe='')}/{crypto.b64e(challenge)}"
        try:
            return dict(self._call("GET", path)["payment"])
        except ApiError as exc:
            if exc.status == 404 and exc.code == NO_PAYMENT_YET:
                return None
            _raise_if_older_server(exc, "cannot say what became of presented means")
            raise

    def refund(
        self, payment_id: str, amount: int | None = None, *, idempotency_key: str | None = None
    ) -> Json:
        key = idempotency_key or new_idempotency_key()
        body = _drop_none({"amount": amount})
        return self._call("POST", f"/v1/payments/{payment_id}/refunds", body, idempotency_key=key)

    # --- grants sent through the server -------------------------------------------------------

    def send_grant(self, grant_id: str, to: str, record: bytes) -> Json:
        """Have the server keep grant ``grant_id``'s hand-off ``record`` (the NDEF message a
        tap would carry) for target terminal ``to``. A retry is safe: the same grant still
        waiting for the same target is answered with its delivery again.

        Raises ApiError ``server_too_old`` when the server cannot deliver grants."""
        body = {"grant_id": grant_id, "to": to, "record": crypto.b64e(record)}
        try:
            return self._call("POST", "/v1/deliveries", body, idempotent=True)
        except ApiError as exc:
            _raise_if_older_server(exc, "cannot deliver grants")
            raise

    def deliveries(self, wait: float = 0) -> list[Json]:
        """The grants waiting for this terminal, each with its ``record`` (base64url), until
        acknowledged; with ``wait`` > 0 the server holds the call open until one arrives or
        ``wait`` seconds (≤ 30) pass."""
        query = _drop_none({"wait": wait or None})
        try:
            answer = self._call("GET", "/v1/deliveries", query=query, extra_timeout=wait)
        except ApiError as exc:
            _raise_if_older_server(exc, "cannot deliver grants")
            raise
        return list(answer["deliveries"])

    def get_delivery(self, delivery_id: str) -> Json:
        return self._call("GET", f"/v1/deliveries/{quote(delivery_id, safe='')}")

    def ack_delivery(self, delivery_id: str) -> Json:
        """This terminal kept the grant: the server deletes its copy (repeating is harmless)."""
        path = f"/v1/deliveries/{quote(delivery_id, safe='')}/ack"
        return self._call("POST", path, idempotent=True)

    # --- notifications and health ------------------------------------------------------------

    def notifications(self, after: str | None = None, wait: float = 0) -> list[Json]:
        """The caller's notifications newer than ``after``; with ``wait`` > 0 the server holds
        the call open until one arrives or ``wait`` seconds (≤ 30) pass."""
        query = _drop_none({"after": after, "wait": wait or None})
        return list(
            self._call("GET", "/v1/notifications", query=query, extra_timeout=wait)["notifications"]
        )

    def health(self) -> Json:
        return self._call("GET", "/v1/health")

    # --- plumbing ------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        query: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        idempotent: bool | None = None,
        retry_unsafe: bool = False,
        extra_timeout: float = 0,
    ) -> Json:
        if query:
            path = f"{path}?{urlencode(query)}"
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        safe = (
            idempotent
            if idempotent is not None
            else (method in {"GET", "PATCH"} or idempotency_key is not None)
        )
        attempt = 0
        while True:
            try:
                return self._send(method, path, payload, idempotency_key, extra_timeout)
            except ApiError as error:
                attempt += 1
                if not self._should_retry(error, safe or retry_unsafe, attempt):
                    raise
                backoff = random.uniform(0, min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * 2**attempt))
                self._sleep(max(backoff, min(error.retry_after_s or 0, _BACKOFF_MAX_S)))

    def _should_retry(self, error: ApiError, safe: bool, attempt: int) -> bool:
        if attempt > self._max_retries:
            return False
        if error.code in {"connect_failed", "database_unavailable"}:
            return True
        return safe and error.retryable

    def _send(
        self,
        method: str,
        path: str,
        payload: bytes,
        idempotency_key: str | None,
        extra_timeout: float,
    ) -> Json:
        headers = self._signed_headers(method, self._prefix + path, payload)
        if payload:
            headers["Content-Type"] = "application/json"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        try:
            response = self._http.request(
                method,
                self.base_url + path,
                content=payload,
                headers=headers,
                timeout=self._timeout + extra_timeout,
            )
        except httpx.ConnectError as exc:
            if _certificate_failure(exc):
                raise ApiError(
                    f"TLS certificate verification failed for {self.base_url}: "
                    f"{_certificate_failure(exc)}. Pass the server's CA file with --ca FILE "
                    "(env NFCPAY_CA) or PaymentClient(verify=...)",
                    code="certificate_verify_failed",
                    retryable=False,
                ) from exc
            raise ServerUnavailable(
                f"cannot reach the payment server at {self.base_url}: {exc}", code="connect_failed"
            ) from exc
        except httpx.TransportError as exc:
            raise ServerUnavailable(
                f"no answer from the payment server at {self.base_url}: {type(exc).__name__}"
            ) from exc
        return _decode(response)

    def _signed_headers(self, method: str, path: str, payload: bytes) -> dict[str, str]:
        return signed_headers(
            self.terminal_id, self._key, method, path, payload, timestamp=int(self.clock())
        )


def signed_headers(
    terminal_id: str,
    private_key: Ed25519PrivateKey,
    method: str,
    path: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The authentication headers of one request: ``terminal_id`` signs method, path (with
    its query), timestamp, a fresh nonce and the body digest with ``private_key``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = nonce or secrets.token_urlsafe(18)
    message = crypto.request_message(method, path, timestamp, nonce, terminal_id, body)
    return {
        "X-Nfcpay-Terminal": terminal_id,
        "X-Nfcpay-Timestamp": str(timestamp),
        "X-Nfcpay-Nonce": nonce,
        "X-Nfcpay-Signature": crypto.b64e(private_key.sign(message)),
    }


def _raise_if_older_server(exc: ApiError, cannot: str) -> None:
    """For the 404 of a route the server does not have, raise the ApiError
    ``server_too_old`` saying the server ``cannot`` do this and needs an upgrade."""
    if exc.status != 404 or exc.code != "not_found":
        return
    raise ApiError(
        f"the payment server runs an older nfcpay that {cannot}: upgrade nfcpay on the server",
        code=SERVER_TOO_OLD,
        status=404,
    ) from exc


def _default_transport(verify: str | Path | ssl.SSLContext | None = None) -> httpx.HTTPTransport:
    # httpx writes request headers and body separately; without TCP_NODELAY, Nagle's
    # algorithm meets the server's delayed ACK and every POST waits ~40 ms.
    return httpx.HTTPTransport(
        verify=tls_context(verify),
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )


def tls_context(verify: str | Path | ssl.SSLContext | None = None) -> ssl.SSLContext:
    """The context that verifies the server: ``verify`` (a CA file or a context), else the
    system's trusted CAs. (``nfcpay --ca``/``NFCPAY_CA`` reach here as ``verify``.)"""
    if isinstance(verify, ssl.SSLContext):
        return verify
    cafile = verify or None
    try:
        return ssl.create_default_context(cafile=str(cafile) if cafile else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the CA file {cafile}: {exc}") from None


def _certificate_failure(exc: BaseException) -> str | None:
    """The verification error behind a failed TLS handshake, if that is what failed."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause.verify_message or str(cause)
        cause = cause.__cause__ or cause.__context__
    return None


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def new_idempotency_key() -> str:
    return f"idem_{uuid.uuid4().hex}"


def _decode(response: httpx.Response) -> Json:
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.is_success and isinstance(data, dict):
        return data
    status = response.status_code
    code = data.get("error") if isinstance(data, dict) else None
    message = data.get("message") if isinstance(data, dict) else None
    text = message or f"the payment server answered HTTP {status}"
    if status >= 500 or status in _RETRYABLE_STATUS:
        error = ServerUnavailable(text, code=code or "server_error", status=status)
        error.retry_after_s = _retry_after(response)
        raise error
    in_progress = status == 409 and code == "idempotency_in_progress"
    field = data.get("field") if isinstance(data, dict) else None
    raise ApiError(
        text, code=code or "api_error", status=status, retryable=in_progress, field=field
    )
