"""A cap on request bodies: 413 for anything larger, before a route reads it into memory.

No legitimate body comes near the cap (a group payment with the most grants a means can
carry is a few kilobytes), and without one a client could make the server buffer whatever
it sends. A declared ``Content-Length`` above the cap is refused before a byte is read; a
chunked body is counted as it arrives and refused once it passes the cap.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The largest request body the API accepts.
MAX_BODY_BYTES = 64 * 1024


class BodySizeLimit:
    """ASGI middleware answering 413 ``body_too_large`` (JSON, like every API error) to a
    request whose body exceeds ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if declared_length(scope) > self.limit:
            await self._refuse(send)
            return
        received = 0
        too_large = False
        started = False

        async def counted() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    too_large = True
                    return {"type": "http.disconnect"}  # the route stops reading here
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # whatever the route answers to a "disconnect", the 413 is the answer
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": "body_too_large",
                "message": f"the request body is larger than {self.limit} bytes",
            }
        ).encode()
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def declared_length(scope: Scope) -> int:
    """The request's ``Content-Length`` (0 when absent or unreadable: then it is counted)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0
