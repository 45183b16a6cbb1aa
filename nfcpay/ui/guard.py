"""Who may drive the page: the person who has the link ``nfcpay ui`` printed, and no one else.

The page acts as this terminal with its own key, so everything that reaches it must be
shown to come from that person's browser (Jupyter's model):

* **Host.** Only ``127.0.0.1:PORT`` or ``localhost:PORT``: a DNS-rebinding page that points
  its own name at 127.0.0.1 is refused before anything else.
* **Token.** A random token is in the printed URL (``?token=``) once; it is exchanged for an
  HttpOnly, SameSite=Strict cookie and the browser is sent on to the same page without it,
  so the token stays out of history and Referer headers (none goes to other sites). Any
  request without the token or the cookie gets 403. Compared in constant time.
* **CSRF.** Only GET/HEAD read and only POST changes anything. A POST must come from this
  page's origin (``Origin`` or ``Sec-Fetch-Site``: another site's form or fetch is refused,
  whatever cookies it carries) and carry the session's CSRF token in its ``csrf`` form field
  or ``X-CSRF-Token`` header.

Refusals are plain sentences; nothing of the request (least of all a token) is logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The largest form body a page sends (amounts, a few options): anything bigger is refused.
MAX_BODY = 16 * 1024
#: Where the parsed form of a checked POST is left for the endpoint.
FORM_KEY = "nfcpay.form"

WITHOUT_LINK = (
    "This page needs the link `nfcpay ui` printed, with its token: open that link again "
    "(or restart `nfcpay ui` for a new one)."
)


@dataclass(frozen=True)
class Secrets:
    """The URL token and the CSRF token of one ``nfcpay ui`` process."""

    token: str
    csrf: str
    port: int

    @property
    def cookie_name(self) -> str:
        return f"nfcpay_ui_{self.port}"

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(f"http://{host}:{self.port}" for host in ("127.0.0.1", "localhost"))


def same(given: str | None, expected: str) -> bool:
    """A constant-time comparison of a secret someone sent with ours."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class Guard:
    """ASGI middleware enforcing the rules in this module's docstring."""

    def __init__(self, app: App, secrets: Secrets) -> None:
        self.app = app
        self.secrets = secrets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if headers.get("host") not in {o.removeprefix("http://") for o in self.secrets.origins}:
            await _refuse(send, 403, "This page answers only at the address `nfcpay ui` printed.")
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if same(query.get("token", [None])[-1], self.secrets.token):
            await self._exchange_token(scope, query, send)
            return
        if not same(_cookie(headers, self.secrets.cookie_name), self.secrets.token):
            await _refuse(send, 403, WITHOUT_LINK)
            return
        method = scope["method"]
        send = _with_headers(send)
        if method in ("GET", "HEAD"):
            await self.app(scope, receive, send)
        elif method != "POST":
            await _refuse(
                send, 405, f"{method} is not used here: pages read with GET, act with POST."
            )
        else:
            await self._post(scope, headers, receive, send)

    async def _exchange_token(self, scope: Scope, query: dict[str, list[str]], send: Send) -> None:
        """The token from the printed link becomes a cookie; the address loses it."""
        rest = urlencode({k: v for k, v in query.items() if k != "token"}, doseq=True)
        location = scope["path"] + (f"?{rest}" if rest else "")
        cookie = (
            f"{self.secrets.cookie_name}={self.secrets.token}; Path=/; HttpOnly; SameSite=Strict"
        )
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", location.encode()),
                    (b"set-cookie", cookie.encode()),
                    *SECURITY_HEADERS,
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def _post(
        self, scope: Scope, headers: dict[str, str], receive: Receive, send: Send
    ) -> None:
        origin, site = headers.get("origin"), headers.get("sec-fetch-site")
        if (origin is None and site is None) or (
            origin is not None and origin not in self.secrets.origins
        ):
            await _refuse(send, 403, "Refused: this request did not come from this page.")
            return
        if site is not None and site not in ("same-origin", "none"):
            await _refuse(send, 403, "Refused: this request came from another site.")
            return
        body = await _read_body(receive)
        if body is None:
            await _refuse(send, 413, "Refused: the form is larger than any this page sends.")
            return
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        csrf = headers.get("x-csrf-token") or form.get("csrf")
        if not same(csrf, self.secrets.csrf):
            await _refuse(
                send, 403, "Refused: the form's CSRF token is missing or stale; reload the page."
            )
            return
        scope[FORM_KEY] = form
        await self.app(scope, _replay(body), send)


#: Sent with every answer: no framing by other sites, no sniffing, no Referer to other sites
#: (a "no-referrer" page would make Chrome send "Origin: null" with its own forms), no caching.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
        await send(message)

    return sending


def _cookie(headers: dict[str, str], name: str) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None past :data:`MAX_BODY`."""
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if len(body) > MAX_BODY:
            return None
        if not message.get("more_body", False):
            return body


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _refuse(send: Send, status: int, sentence: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *SECURITY_HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": (sentence + "\n").encode()})
