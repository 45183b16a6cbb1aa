"""Integration through REAL ``nfcpay server run`` processes (two sharing one database)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from nfcpay import crypto
from nfcpay.client import signed_headers
from nfcpay.errors import ApiError
from nfcpay.testing.server import (
    PaymentScene,
    ServerProcess,
    payment_scene,
    register_terminal,
    state_snapshot,
)
from tests.support.harness import DATABASES, database_url, start_servers

CARD = "5555555555554444"


@pytest.fixture(scope="module", params=DATABASES)
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServerProcess]]:
    data_dir = tmp_path_factory.mktemp("server")
    with database_url(request.param) as db_url:
        running = start_servers(2, data_dir, db_url)
        try:
            yield running
        finally:
            for process in running:
                process.stop()


@pytest.fixture
def server(servers: list[ServerProcess]) -> ServerProcess:
    return servers[0]


def test_happy_path_issue_authorize_refund(server: ServerProcess) -> None:
    scene = payment_scene(server.url, source={"kind": "card", "number": CARD}, max_uses=2)
    paid = scene.pay(12_000)
    assert paid["status"] == "approved"
    refund = scene.merchant.client.refund(paid["payment_id"], 2_000)
    assert refund["remaining_refundable"] == 10_000
    grant = scene.owner.client.get_grant(scene.grant_id)
    assert (grant["remaining_amount"], grant["remaining_uses"]) == (40_000, 1)
    assert scene.owner.client.list_sources()[0]["outstanding"] == 10_000
    assert [n["kind"] for n in scene.owner.client.notifications()] == ["grant_used"]
    assert server.audit() == []


def test_second_process_sees_the_same_books(servers: list[ServerProcess]) -> None:
    scene = payment_scene(servers[0].url, max_uses=2)
    assert scene.pay(1_000)["status"] == "approved"
    owner_elsewhere = scene.owner.client.__class__(
        servers[1].url, scene.owner.terminal_id, scene.owner.private_key
    )
    assert owner_elsewhere.get_grant(scene.grant_id)["remaining_uses"] == 1


def _signed_headers(scene: PaymentScene, body: bytes, **override: Any) -> dict[str, str]:
    key = override.get("key", scene.owner.private_key)
    signed = signed_headers(
        scene.owner.terminal_id,
        key,
        "POST",
        "/v1/funding-sources",
        body,
        timestamp=override.get("timestamp"),
        nonce=override.get("nonce"),
    )
    headers = {**signed, "Content-Type": "application/json"}
    return {k: v for k, v in headers.items() if k not in override.get("drop", ())}


def test_authentication_failures_change_nothing(servers: list[ServerProcess]) -> None:
    server = servers[0]
    scene = payment_scene(server.url)
    body = b'{"kind":"wallet","balance":5,"currency":"KRW"}'
    url = f"{server.url}/v1/funding-sources"
    replayed = _signed_headers(scene, body)
    assert httpx.post(url, content=body, headers=replayed).status_code == 201
    before = server.query(state_snapshot)
    attempts = [
        (server, _signed_headers(scene, body, drop=("X-Nfcpay-Signature",))),
        (server, _signed_headers(scene, body, key=crypto.generate_terminal_key())),
        (server, _signed_headers(scene, body, timestamp=int(time.time()) - 600)),
        (server, replayed),
        (servers[1], replayed),  # the other process knows the nonce too
    ]
    for target, headers in attempts:
        response = httpx.post(f"{target.url}/v1/funding-sources", content=body, headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "authentication_failed"
    assert server.query(state_snapshot) == before


def test_idempotent_replay_and_conflict(server: ServerProcess) -> None:
    scene = payment_scene(server.url, max_uses=3)
    challenge = secrets.token_bytes(16)
    first = scene.pay(500, challenge=challenge, idempotency_key="order-1")
    again = scene.pay(500, challenge=challenge, idempotency_key="order-1")
    assert again == {**first, "replayed": True}
    with pytest.raises(ApiError) as caught:
        scene.pay(600, idempotency_key="order-1")
    assert caught.value.status == 409
    assert scene.owner.client.get_grant(scene.grant_id)["remaining_uses"] == 2


@pytest.mark.parametrize(
    ("code", "kind"),
    [("terminal_not_allowed", "terminal_not_allowed"), ("over_remaining_cap", None)],
)
def test_declines_through_the_process(server: ServerProcess, code: str, kind: str | None) -> None:
    scene = payment_scene(server.url, amount_cap=1_000)
    before = server.query(state_snapshot)
    if code == "terminal_not_allowed":
        answer = scene.pay(100, presenter=register_terminal(server.url, "target"))
    else:
        answer = scene.pay(1_001)
    assert answer["decline_code"] == code
    assert server.query(state_snapshot) == before
    kinds = [n["kind"] for n in scene.owner.client.notifications()]
    assert kinds == ([kind] if kind else [])


def _race(scene: PaymentScene, servers: list[ServerProcess], amount: int, n: int) -> list[str]:
    """``n`` concurrent payments of ``amount`` with the scene's grant, spread over servers."""
    merchants = [
        scene.merchant.client.__class__(
            s.url, scene.merchant.terminal_id, scene.merchant.private_key
        )
        for s in servers
    ]

    def pay(i: int) -> str:
        challenge, means = scene.signed_means(amount)
        answer = merchants[i % len(merchants)].authorize_payment(
            amount=amount, currency="KRW", challenge=challenge, means=means
        )
        return str(answer.get("decline_code") or answer["status"])

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(pay, range(n)))


def test_concurrent_payments_never_overspend(servers: list[ServerProcess]) -> None:
    one_use = payment_scene(servers[0].url, max_uses=1)
    outcomes = _race(one_use, servers, 100, 16)
    assert outcomes.count("approved") == 1
    assert set(outcomes) == {"approved", "no_uses_left"}
    capped = payment_scene(servers[0].url, amount_cap=100, max_uses=50)
    outcomes = _race(capped, servers, 30, 16)
    assert outcomes.count("approved") == 3
    assert servers[0].audit() == []


def test_logs_hold_no_secrets(servers: list[ServerProcess], tmp_path: Path) -> None:
    scene = payment_scene(servers[0].url, source={"kind": "card", "number": CARD})
    scene.pay(100)
    for server in servers:
        log = server.log()
        assert "listening on http://" in log
        assert CARD not in log
        assert crypto.b64e(scene.auth_code) not in log
