"""PaymentClient's retry policy and error mapping, against a fake transport (no server)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from nfcpay import crypto
from nfcpay.client import PaymentClient
from nfcpay.errors import ApiError, ServerUnavailable

Handler = Callable[[httpx.Request], httpx.Response]


def client_with(
    handler: Handler, max_retries: int = 3
) -> tuple[PaymentClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = PaymentClient(
        "http://server.test",
        "t_me",
        crypto.generate_terminal_key(),
        transport=httpx.MockTransport(record),
        max_retries=max_retries,
    )
    return client, seen


def refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def test_requests_are_signed_over_path_query_and_body() -> None:
    key = crypto.generate_terminal_key()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"notifications": []})

    client = PaymentClient(
        "http://server.test", "t_me", key, transport=httpx.MockTransport(handler)
    )
    client.notifications(after="n_1", wait=1)
    request = seen[0]
    message = crypto.request_message(
        "GET",
        "/v1/notifications?after=n_1&wait=1",
        int(request.headers["X-Nfcpay-Timestamp"]),
        request.headers["X-Nfcpay-Nonce"],
        "t_me",
        b"",
    )
    signature = crypto.b64d(request.headers["X-Nfcpay-Signature"])
    assert crypto.verify_signature(crypto.public_key_bytes(key), signature, message)


def test_connection_refused_is_retried_then_unavailable() -> None:
    client, seen = client_with(refuse_connection, max_retries=2)
    with pytest.raises(ServerUnavailable) as caught:
        client.add_wallet(100, "KRW")
    assert len(seen) == 3
    assert caught.value.retryable


def test_5xx_retried_only_when_idempotent() -> None:
    client, seen = client_with(lambda r: httpx.Response(503, json={"error": "busy"}), 2)
    with pytest.raises(ServerUnavailable):
        client.add_wallet(100, "KRW")
    assert len(seen) == 1
    with pytest.raises(ServerUnavailable):
        client.list_sources()
    assert len(seen) == 4


def test_payment_retries_keep_the_idempotency_key_and_re_sign() -> None:
    answers = iter([httpx.Response(502), httpx.Response(200, json={"status": "approved"})])
    client, seen = client_with(lambda r: next(answers))
    answer = client.authorize_payment(amount=1, currency="KRW", challenge=b"c" * 16, means={})
    assert answer["status"] == "approved"
    keys = {r.headers["Idempotency-Key"] for r in seen}
    nonces = {r.headers["X-Nfcpay-Nonce"] for r in seen}
    assert len(seen) == 2 and len(keys) == 1 and len(nonces) == 2
    assert seen[0].content == seen[1].content


def test_client_errors_are_not_retried_and_carry_fields() -> None:
    body = {"error": "validation_error", "message": "amount: bad", "field": "amount"}
    client, seen = client_with(lambda r: httpx.Response(422, json=body))
    with pytest.raises(ApiError) as caught:
        client.refund("p_1", 5)
    assert len(seen) == 1
    error = caught.value
    assert (error.status, error.code, error.field, error.message) == (
        422,
        "validation_error",
        "amount",
        "amount: bad",
    )
    assert not isinstance(error, ServerUnavailable)


def test_conflict_is_not_retried_but_in_progress_is() -> None:
    conflict = {"error": "idempotency_conflict", "message": "used"}
    client, seen = client_with(lambda r: httpx.Response(409, json=conflict))
    with pytest.raises(ApiError):
        client.refund("p_1", 5, idempotency_key="k")
    assert len(seen) == 1
    answers = iter(
        [
            httpx.Response(409, json={"error": "idempotency_in_progress", "message": "wait"}),
            httpx.Response(201, json={"refund_id": "r_1"}),
        ]
    )
    client, seen = client_with(lambda r: next(answers))
    assert client.refund("p_1", 5)["refund_id"] == "r_1"
    assert json.loads(seen[0].content) == {"amount": 5}
