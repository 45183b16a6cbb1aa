"""The lean POST /v1/payments path (nfcpay.server.fastpath) answers exactly as FastAPI's
route does: every request below goes to the real app and to the same app without the fast
route (sharing one runtime and database), and the two answers must match. Well-formed
requests are served by the fast path; malformed ones are handed to FastAPI."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from nfcpay import crypto
from nfcpay.server.app import create_app
from nfcpay.server.bodylimit import MAX_BODY_BYTES
from nfcpay.server.fastpath import PATH, PaymentFastPath
from nfcpay.testing.server import InProcessTransport, PaymentScene, Terminal
from tests.support.harness import Api, fast_path_of
from tests.support.signing import headers_for

Sent = tuple[int, dict[str, Any]]


@pytest.fixture
def fastapi_only(api: Api) -> Iterator[httpx.Client]:
    """The same app over the same runtime, without the fast path."""
    app = create_app(api.runtime.settings, runtime=api.runtime, payment_fast_path=False)
    transport = InProcessTransport(app)
    with httpx.Client(transport=transport, base_url=api.server.url) as client:
        yield client
    transport.close()


def send(
    client: httpx.Client,
    merchant: Terminal,
    body: bytes,
    *,
    key: str | None = "k",
    content_type: str | None = "application/json",
    tamper: bool = False,
) -> Sent:
    headers = headers_for(merchant, body=body, path=PATH)
    if content_type is None:
        del headers["Content-Type"]
    else:
        headers["Content-Type"] = content_type
    if key is not None:
        headers["Idempotency-Key"] = f"{key}-{secrets.token_hex(4)}"
    if tamper:
        headers["X-Nfcpay-Signature"] = crypto.b64e(b"\0" * 64)
    response = client.post(PATH, content=body, headers=headers)
    return response.status_code, response.json()


def normalized(sent: Sent, scene: PaymentScene) -> Sent:
    """The answer with this scene's ids (and the target's label) and the new payment's own
    values blanked out."""
    status, answer = sent
    text = json.dumps(answer)
    for name, value in [
        ("merchant", scene.merchant.merchant_id),
        ("target", scene.target.terminal_id),
        ("target label", scene.target.info["label"]),
        ("grant", scene.grant_id),
    ]:
        text = text.replace(str(value), f"<{name}>")
    volatile = {"payment_id", "approval_code", "created_at"}
    return status, {k: ("…" if k in volatile else v) for k, v in json.loads(text).items()}


def encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


CASES: dict[str, Callable[[PaymentScene], tuple[bytes, dict[str, Any]]]] = {
    "approved": lambda s: (encoded(s.payment_body(100)), {}),
    "declined": lambda s: (encoded({**s.payment_body(100), "amount": 101}), {}),
    "charset": lambda s: (
        encoded(s.payment_body(100)),
        {"content_type": "application/json; charset=utf-8"},
    ),
    "no_key": lambda s: (encoded(s.payment_body(100)), {"key": None}),
    "bad_signature": lambda s: (encoded(s.payment_body(100)), {"tamper": True}),
    "broken_json": lambda s: (b'{"amount": 1,', {}),
    "not_utf8": lambda s: (b'{"amount": "\xff"}', {}),
    "empty": lambda s: (b"", {}),
    "list": lambda s: (b"[]", {}),
    "string_amount": lambda s: (encoded({**s.payment_body(100), "amount": "100"}), {}),
    "extra_field": lambda s: (encoded({**s.payment_body(100), "tip": 1}), {}),
    "text_plain": lambda s: (encoded(s.payment_body(100)), {"content_type": "text/plain"}),
    "no_content_type": lambda s: (encoded(s.payment_body(100)), {"content_type": None}),
    "invalid_and_unsigned": lambda s: (b'{"amount": 0}', {"tamper": True}),
}
FAST = {"approved", "declined", "charset", "no_key", "bad_signature"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_path_answers_like_fastapi(api: Api, fastapi_only: httpx.Client, case: str) -> None:
    fast = fast_path_of(api.server.app)
    before = (fast.served, fast.handed_over)
    answers = []
    for client in (api.http, fastapi_only):
        scene = api.scene(max_uses=5, amount_cap=1_000, per_use_cap=100)
        body, options = CASES[case](scene)
        answers.append(normalized(send(client, scene.merchant, body, **options), scene))
    assert answers[0] == answers[1]
    counted = (fast.served - before[0], fast.handed_over - before[1])
    assert counted == ((1, 0) if case in FAST else (0, 1))


def test_fast_path_replays_an_idempotent_retry(api: Api) -> None:
    scene = api.scene(max_uses=5)
    body = encoded(scene.payment_body(100))
    headers = headers_for(scene.merchant, body=body, path=PATH) | {"Idempotency-Key": "same"}
    fast = fast_path_of(api.server.app)
    served = fast.served
    first = api.http.post(PATH, content=body, headers=headers).json()
    headers = headers_for(scene.merchant, body=body, path=PATH) | {"Idempotency-Key": "same"}
    second = api.http.post(PATH, content=body, headers=headers).json()
    assert first["status"] == "approved" and second == {**first, "replayed": True}
    assert fast.served - served == 2


def test_a_declared_body_over_the_cap_goes_to_the_app_unread(api: Api) -> None:
    """Handed to the app on its Content-Length alone, for the cap's 413 (answered as for any
    route: tests/hardening/test_crafted_bodies.py); not a byte is read here."""
    handed: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        handed.append(scope["path"])

    async def receive() -> Any:
        raise AssertionError("the fast path read a body the cap refuses")

    async def send(message: Any) -> None:
        raise AssertionError("the fast path answered instead of the app")

    async def not_called(request: Any, error: Exception) -> Any:
        raise AssertionError(error)

    fast = PaymentFastPath(app, rt=api.runtime, answer_error=not_called)
    length = str(MAX_BODY_BYTES + 1).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", length)]
    scope = {"type": "http", "method": "POST", "path": PATH, "headers": headers}
    asyncio.run(fast(scope, receive, send))
    assert handed == [PATH]
    assert (fast.served, fast.handed_over) == (0, 1)
