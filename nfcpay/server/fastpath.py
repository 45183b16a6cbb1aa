"""A lean path for POST /v1/payments, the one hot route, in front of the whole FastAPI app.

FastAPI's per-request work (its middleware, dependency solving, parameter extraction,
response-model serialization) cost more CPU than the payment itself. This plain ASGI
middleware is the outermost of the app's own (outside it are only the layers Starlette and
FastAPI always put first: the last-resort 500 handler, FastAPI's telemetry hook and body
limit) and does only what the FastAPI route does, in the same order of effect: parse the JSON body,
validate it with the same :class:`PaymentIn` model, verify the signature
(:func:`verify_request`), check the idempotency key, run the same transaction (:func:`pay`)
and answer the same JSON. Every other request goes to the app untouched.

Anything unusual — a content type other than ``application/json``, an empty or malformed
body, a body the model refuses, a body with more brackets than any payment has, a body over
the size cap — is handed to the app's own route untouched (body replayed), so every error
answer, and the order in which errors are found, stays exactly FastAPI's (the cap's 413
included). Domain errors raised here (authentication, rate limit, idempotency, database) are
answered by the app's own handler for them, as for any route. The OpenAPI document is
unchanged: it is built from the FastAPI route.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from nfcpay.errors import PaymentError
from nfcpay.server.auth import verify_request
from nfcpay.server.bodylimit import MAX_BODY_BYTES, declared_length
from nfcpay.server.runtime import Caller, Runtime
from nfcpay.server.schemas import PaymentIn
from nfcpay.server.services import authorization, idempotency

PATH = "/v1/payments"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]
#: How the app answers a domain error (its exception handler for :class:`PaymentError`).
ErrorAnswer = Callable[[Request, Exception], Awaitable[Response]]

_JSON_HEADERS = [(b"content-type", b"application/json")]

#: More ``[`` and ``{`` than this and the body is not parsed here. A valid payment has at most
#: 35 (itself, ``means``, ``grants`` and its up to 32 shares) plus any inside its short
#: strings. The bound keeps ``json.loads``, which recurses once per level and would raise
#: RecursionError (a 500) on a body nested a thousand deep, away from deep bodies: the count
#: runs in C, so an unauthenticated client cannot make this path do more than that.
MAX_BRACKETS = 64


async def pay(rt: Runtime, caller: Caller, body: PaymentIn, key: str | None) -> dict[str, Any]:
    """The payment route's work once the caller is known: shared by both paths."""
    key = idempotency.check_key(key)
    digest = idempotency.request_hash(PATH, body.model_dump(mode="json"))
    work = authorization.Authorization(rt, caller, body, key, digest)
    return await rt.unit_async(caller, work, first=work.send)


class PaymentFastPath:
    """The ASGI middleware in front of ``app``; ``answer_error`` is the app's handler for
    :class:`PaymentError`. ``served`` and ``handed_over`` count the payment requests answered
    here and those handed to the app's route (tests, diagnostics)."""

    def __init__(self, app: Asgi, *, rt: Runtime, answer_error: ErrorAnswer) -> None:
        self.app = app
        self.rt = rt
        self.answer_error = answer_error
        self.served = 0
        self.handed_over = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if declared_length(scope) > MAX_BODY_BYTES:  # refused by the cap, before it is read
            self.handed_over += 1
            await self.app(scope, receive, send)
            return
        body, whole = await _read_body(receive, MAX_BODY_BYTES)
        if body is None:  # the client went away before sending its whole request
            return
        replay = _replaying(body, whole, receive)
        parsed = _parse(scope, body) if whole else None
        if parsed is None:
            self.handed_over += 1
            await self.app(scope, replay, send)
            return
        self.served += 1
        request = Request(scope, replay)
        try:
            caller = (await verify_request(request, self.rt)).caller
            answer = await pay(self.rt, caller, parsed, request.headers.get("idempotency-key"))
        except PaymentError as error:
            response = await self.answer_error(request, error)
            await response(scope, replay, send)
            return
        # Exactly starlette's JSONResponse rendering, as the FastAPI route answers.
        payload = json.dumps(answer, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        content = payload.encode()
        headers = [(b"content-length", str(len(content)).encode()), *_JSON_HEADERS]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def _parse(scope: Scope, body: bytes) -> PaymentIn | None:
    """The validated body, or None when FastAPI's route should handle (and answer) it."""
    if not body or _content_type(scope) != b"application/json":
        return None
    if body.count(b"[") + body.count(b"{") > MAX_BRACKETS:
        return None
    try:
        return PaymentIn.model_validate(json.loads(body))
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError included
        return None


def _content_type(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bytes(value).split(b";", 1)[0].strip().lower()
    return None


async def _read_body(receive: Receive, limit: int) -> tuple[bytes | None, bool]:
    """The body, and whether that is all of it: reading stops once it passes ``limit`` (the
    app's size cap answers that). None when the client went away first."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            return None, False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > limit:
            return b"".join(chunks), False


def _replaying(body: bytes, whole: bool, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read body once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": not whole}

    return replay
