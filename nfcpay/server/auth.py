"""Request authentication: every /v1 call is signed with the calling terminal's Ed25519 key.

The signature covers method, path with query, timestamp, nonce, terminal id and a digest of
the body (:func:`nfcpay.crypto.request_message`). Here the signature and timestamp are
checked; the nonce is consumed in the request's own database transaction
(:meth:`Runtime.unit`) so that a replay is refused on every server process.

Rate limits (per process, :mod:`.ratelimit`): a verified terminal takes one token from its
request bucket; a failed verification takes one from the failure bucket of (client address,
claimed terminal id), and once that bucket is empty further failures are answered 429
instead of 401. Every request is verified first (an Ed25519 check costs ~0.15 ms): one whose
signature verifies is never refused for failures others sent in its name, so nobody can lock
a real terminal out by sending garbage under its id, not even from the same address (behind a
load balancer every client may share one). Both answer 429 ``rate_limited`` with
``Retry-After``. The client address is the TCP peer's, or the one a trusted proxy names
(``nfcpay server run --forwarded-allow-ips``; none is trusted by default).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fastapi import Request

from nfcpay import crypto
from nfcpay.errors import AuthenticationFailed, RateLimited
from nfcpay.server.ratelimit import retry_after
from nfcpay.server.runtime import Caller, Runtime

TERMINAL_HEADER = "x-nfcpay-terminal"
TIMESTAMP_HEADER = "x-nfcpay-timestamp"
NONCE_HEADER = "x-nfcpay-nonce"
SIGNATURE_HEADER = "x-nfcpay-signature"
#: X-Nfcpay-Terminal value while registering: the key being registered signs the request.
NEW_TERMINAL = "new"


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A request whose signature was checked against ``public_key``."""

    caller: Caller
    public_key: bytes
    body: bytes


def _path_with_query(request: Request) -> str:
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if raw else request.scope["path"]
    query = request.scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def _headers(request: Request) -> tuple[str, int, str, bytes]:
    headers = request.headers
    terminal_id = headers.get(TERMINAL_HEADER)
    timestamp = headers.get(TIMESTAMP_HEADER)
    nonce = headers.get(NONCE_HEADER)
    signature = headers.get(SIGNATURE_HEADER)
    if not (terminal_id and timestamp and nonce and signature):
        raise AuthenticationFailed(
            "missing authentication headers (X-Nfcpay-Terminal, -Timestamp, -Nonce, -Signature)"
        )
    if not 16 <= len(nonce) <= 128 or not nonce.isascii():
        raise AuthenticationFailed("X-Nfcpay-Nonce must be 16 to 128 ASCII characters")
    try:
        return terminal_id, int(timestamp), nonce, crypto.b64d(signature)
    except ValueError:
        raise AuthenticationFailed("malformed X-Nfcpay-Timestamp or X-Nfcpay-Signature") from None


async def verify_request(
    request: Request, runtime: Runtime, *, registering: bool = False
) -> SignedRequest:
    """Check the signature headers of ``request``; raise AuthenticationFailed on any doubt,
    RateLimited when the caller is over its request budget or, failing verification, over the
    failure budget of its address and claimed terminal."""
    address = request.client.host if request.client else "unknown"
    try:
        signed = await _verify(request, runtime, registering=registering)
    except AuthenticationFailed:
        claimed = request.headers.get(TERMINAL_HEADER, "")
        wait = runtime.auth_failures.take((address, claimed))
        if wait:
            raise RateLimited(
                "too many failed authentications from this address for this terminal",
                retry_after_s=retry_after(wait),
            ) from None
        raise
    caller = signed.caller.terminal_id
    wait = runtime.requests.take(("new", address) if registering else caller)
    if wait:
        raise RateLimited("too many requests from this terminal", retry_after_s=retry_after(wait))
    return signed


async def _verify(request: Request, runtime: Runtime, *, registering: bool) -> SignedRequest:
    terminal_id, timestamp, nonce, signature = _headers(request)
    if abs(runtime.clock() - timestamp) > runtime.settings.max_clock_skew_s:
        raise AuthenticationFailed("request timestamp is too far from the server clock")
    body = await request.body()
    if registering:
        if terminal_id != NEW_TERMINAL:
            raise AuthenticationFailed("registration is signed with X-Nfcpay-Terminal: new")
        public_key = _public_key_from_registration(body)
        caller = Caller(NEW_TERMINAL, "new", None, nonce)
    else:
        key = runtime.cached_key(terminal_id) or await runtime.db.run_async(
            lambda tx: runtime.terminal_key(tx, terminal_id)
        )
        if key is None:
            raise AuthenticationFailed("unknown terminal")
        public_key = key.public_key
        caller = Caller(terminal_id, key.role, key.merchant_id, nonce)
    message = crypto.request_message(
        request.method, _path_with_query(request), timestamp, nonce, terminal_id, body
    )
    if not crypto.verify_signature(public_key, signature, message):
        raise AuthenticationFailed("bad request signature")
    return SignedRequest(caller, public_key, body)


def _public_key_from_registration(body: bytes) -> bytes:
    try:
        raw = crypto.b64d(json.loads(body)["public_key"])
    except (ValueError, KeyError, TypeError):
        raise AuthenticationFailed("registration body needs a base64url public_key") from None
    if len(raw) != 32:
        raise AuthenticationFailed("public_key must be a raw 32-byte Ed25519 key")
    return raw
