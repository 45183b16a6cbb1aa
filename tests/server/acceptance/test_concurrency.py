"""Issue 2, acceptance 3: racing authorizations never overspend a grant or a funding source.

64 merchant connections, released together by a barrier, each post one payment (own challenge,
own idempotency key, no client retries so a 5xx cannot hide) against:

* a grant with one use                      → exactly one approved;
* a grant capped at 100, requests of 30     → exactly three approved;
* a wallet of 100 behind several grants     → the balance never goes below zero.

Backends: SQLite behind one server process, SQLite shared by two processes, and PostgreSQL
shared by two processes (each test its own schema, dropped afterwards; needs
NFCPAY_TEST_DATABASE_URL). Requests alternate between the processes.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from nfcpay import crypto
from nfcpay.client import PaymentClient
from nfcpay.testing.server import (
    PaymentScene,
    ServerProcess,
    build_signed_means,
    payment_scene,
    postgres_schema,
)
from tests.support.harness import start_server

RACERS = 64


@dataclass
class Cluster:
    """Server processes sharing one database; scenes are set up through the first."""

    servers: list[ServerProcess]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def scene(self, **kwargs: Any) -> PaymentScene:
        return payment_scene(self.urls[0], **kwargs)

    def query(self, work: Any) -> Any:
        return self.servers[0].query(work)

    def check_sound(self) -> None:
        assert self.servers[0].audit() == []
        for server in self.servers:
            assert "Traceback" not in server.log(), server.log()


def _cluster(data_dir: Path, processes: int, db_url: str | None = None) -> Iterator[Cluster]:
    """Start ``processes`` servers on one database at once (migrations serialize themselves)."""
    with ThreadPoolExecutor(processes) as pool:
        starting = [pool.submit(start_server, data_dir, db_url=db_url) for _ in range(processes)]
    servers = [future.result() for future in starting if future.exception() is None]
    failures = [error for future in starting if (error := future.exception()) is not None]
    try:
        if failures:
            raise failures[0]
        yield Cluster(servers)
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def sqlite_one(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from _cluster(tmp_path_factory.mktemp("sqlite1"), 1)


@pytest.fixture(scope="module")
def sqlite_two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from _cluster(tmp_path_factory.mktemp("sqlite2"), 2)


@pytest.fixture
def postgres_two(postgres_url: str, tmp_path: Path) -> Iterator[Cluster]:
    with postgres_schema(postgres_url) as db_url:
        yield from _cluster(tmp_path / "pg", 2, db_url)


@pytest.fixture(
    params=[
        "sqlite_one",
        pytest.param("sqlite_two", marks=pytest.mark.slow),
        pytest.param("postgres_two", marks=[pytest.mark.postgres, pytest.mark.slow]),
    ]
)
def cluster(request: pytest.FixtureRequest) -> Cluster:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Attempt:
    """One racer's payment: ``amount`` through grant ``grant`` of ``scene``."""

    scene: PaymentScene
    grant_id: str
    auth_code: bytes
    amount: int


def race(cluster: Cluster, attempts: list[Attempt]) -> list[dict[str, Any]]:
    """Post every attempt at once from its own connection; return the answers in order."""
    barrier = threading.Barrier(len(attempts))
    limits = httpx.Limits(max_connections=len(attempts), max_keepalive_connections=len(attempts))
    pools = [httpx.Client(limits=limits, timeout=60) for _ in cluster.urls]

    def run(index: int) -> dict[str, Any]:
        attempt = attempts[index]
        scene = attempt.scene
        usage_auth = crypto.usage_auth(
            attempt.auth_code, attempt.grant_id, scene.owner.terminal_id, scene.target.terminal_id
        )
        challenge = secrets.token_bytes(16)
        means = build_signed_means(
            scene.target,
            merchant=scene.merchant,
            challenge=challenge,
            amount=attempt.amount,
            currency=scene.currency,
            grants=[(attempt.grant_id, usage_auth, attempt.amount)],
        )
        shop = scene.merchant
        server = index % len(pools)
        url, http = cluster.urls[server], pools[server]
        client = PaymentClient(url, shop.terminal_id, shop.private_key, http=http, max_retries=0)
        client.health()  # the connection is open before the start signal
        barrier.wait(timeout=60)
        return client.authorize_payment(
            amount=attempt.amount, currency=scene.currency, challenge=challenge, means=means
        )

    try:
        with ThreadPoolExecutor(len(attempts)) as pool:
            return list(pool.map(run, range(len(attempts))))
    finally:
        for pool in pools:
            pool.close()


def _grant_row(grant_id: str) -> Any:
    return lambda tx: tx.one(
        "SELECT remaining_amount, remaining_uses FROM grants WHERE grant_id = ?", (grant_id,)
    )


def _decided(answers: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    approved = [a for a in answers if a["status"] == "approved"]
    declined = [a for a in answers if a["status"] == "declined"]
    assert len(approved) + len(declined) == len(answers)
    return approved, declined


def test_one_use_grant_is_used_once(cluster: Cluster) -> None:
    scene = cluster.scene(max_uses=1, amount_cap=100_000)
    attempts = [Attempt(scene, scene.grant_id, scene.auth_code, 100)] * RACERS

    approved, declined = _decided(race(cluster, attempts))

    assert len(approved) == 1
    assert {a["decline_code"] for a in declined} == {"no_uses_left"}
    row = cluster.query(_grant_row(scene.grant_id))
    assert (row["remaining_uses"], row["remaining_amount"]) == (0, 100_000 - 100)
    cluster.check_sound()


def test_capped_grant_approves_exactly_three_of_thirty(cluster: Cluster) -> None:
    scene = cluster.scene(max_uses=1_000, amount_cap=100)
    attempts = [Attempt(scene, scene.grant_id, scene.auth_code, 30)] * RACERS

    approved, declined = _decided(race(cluster, attempts))

    assert len(approved) == 3
    assert {a["decline_code"] for a in declined} == {"over_remaining_cap"}
    row = cluster.query(_grant_row(scene.grant_id))
    assert (row["remaining_uses"], row["remaining_amount"]) == (1_000 - 3, 10)
    cluster.check_sound()


def test_wallet_behind_several_grants_never_goes_below_zero(cluster: Cluster) -> None:
    scene = cluster.scene(source={"kind": "wallet", "balance": 100}, amount_cap=100, max_uses=64)
    grants = [(scene.grant_id, scene.auth_code)]
    for _ in range(7):
        more = scene.another_grant(amount_cap=100, max_uses=64)
        grants.append((more.grant_id, more.auth_code))
    amounts = (30, 7, 13, 30, 21, 7, 30, 13)
    attempts = [
        Attempt(scene, *grants[i % len(grants)], amounts[i % len(amounts)]) for i in range(RACERS)
    ]

    answers = race(cluster, attempts)
    approved, declined = _decided(answers)

    spent = sum(a["amount"] for a in approved)
    balance = cluster.query(
        lambda tx: tx.scalar(
            "SELECT balance FROM funding_sources WHERE source_id = ?",
            (scene.source["source_id"],),
        )
    )
    assert 0 < spent <= 100
    assert balance == 100 - spent >= 0
    assert {a["decline_code"] for a in declined} <= {"insufficient_balance"}
    # The balance only goes down, so every amount refused for want of money exceeds what is left.
    pairs = zip(attempts, answers, strict=True)
    refused = [attempt.amount for attempt, a in pairs if a["status"] == "declined"]
    assert all(amount > balance for amount in refused)
    cluster.check_sound()
