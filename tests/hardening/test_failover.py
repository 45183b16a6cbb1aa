"""PostgreSQL failover loses nothing (hardening hole 8): two ``nfcpay server run`` processes
on a primary with a synchronous standby, the primary killed mid-load, the standby promoted.

The test builds both PostgreSQL nodes itself from the machine's binaries
(:mod:`tests.support.pg_cluster`) and starts two real server processes with the multi-host
URL ``postgresql://…@primary,standby/postgres?target_session_attrs=read-write``. It plays
the merchants (32 threads, 1,000 signed authorizations with fixed Idempotency-Keys, grants
running out mid-run; :mod:`tests.support.payment_load`) and their round-robin load
balancer. When a third of the answers are in, it SIGKILLs the whole primary (postmaster and
backends at once) and promotes the standby with ``pg_ctl promote``, as an operator or a
failover manager would; nfcpay never promotes. Merchants whose answer was lost (no answer,
5xx, 503) ask again with the same key and body until they have one. Then:

* the server processes are the ones started at first (no restart), and both answered
  requests sent after the promotion;
* every approval a merchant was given is in the promoted database, and nothing else is
  (no key charged twice); the ledger audit is clean; grants and sources add up; approvals
  replay unchanged (:func:`~tests.support.payment_load.verify`).

Its figures (time from the kill to the first answer to a request sent after it, requests
retried, acknowledged payments lost) are stated in the output and the session summary.
Rerun a plan with ``NFCPAY_FAILOVER_SEED=<seed>``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from nfcpay.server.store import open_database
from tests.support import pg_cluster
from tests.support.payment_load import (
    Cluster,
    Load,
    Request,
    drive,
    plan,
    scenes,
    seeded,
    stored_payments,
    verify,
    wait_settled,
)

pytestmark = pytest.mark.slow

REQUESTS = 1_000
KILL_AT = REQUESTS // 3
#: The failed answers a failover may give: nothing written, or a COMMIT whose answer was lost.
EXPLAINED = {"503 database_unavailable", "503 database_outcome_unknown"}


@pytest.fixture
def pair() -> Iterator[pg_cluster.Pair]:
    reason = pg_cluster.why_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with pg_cluster.primary_and_sync_standby() as built:
        yield built


@dataclass
class Failover:
    """When the primary was killed and the standby promoted (time.monotonic())."""

    killed_at: float = 0.0
    promoted_at: float = 0.0
    in_flight: int = 0


def _fail_over(pair: pg_cluster.Pair, failover: Failover) -> Callable[[Load], None]:
    def disrupt(load: Load) -> None:
        wait_settled(load, KILL_AT)
        failover.in_flight = load.in_flight
        failover.killed_at = time.monotonic()
        pair.primary.kill()
        pair.standby.promote()
        failover.promoted_at = time.monotonic()

    return disrupt


def test_failover_to_synchronous_standby_loses_no_payment(
    tmp_path: Path, pair: pg_cluster.Pair, figures: Callable[[str], None]
) -> None:
    with seeded("failover", "NFCPAY_FAILOVER_SEED") as rng:
        cluster = Cluster(tmp_path / "srv", pair.url(), processes=2)
        try:
            started = {server.url: server.process.pid for server in cluster.servers()}
            grants = scenes(cluster.server().url)
            requests = plan(rng, grants, REQUESTS, "failover")
            failover = Failover()
            try:
                load = drive(cluster, requests, _fail_over(pair, failover))
            except BaseException as exc:
                exc.add_note(pair.logs())
                raise
            assert failover.in_flight > 0, "nothing was in flight at the kill: nothing was tested"
            _check_same_servers_serve_again(cluster, started, requests, failover)
            _check_failures_were_explained(cluster, load)
            lost = _acknowledged_but_missing(pair, requests)
            assert lost == [], f"{len(lost)} acknowledged payments vanished: {lost[:5]}"
            verify(cluster, rng, grants, requests)
        finally:
            cluster.close()
    after_kill = [r for r in requests if r.sent_at >= failover.killed_at and r.answered_at]
    first_answer = min(r.answered_at or 0 for r in after_kill)
    retried = [r for r in requests if r.lost]
    figures(
        f"{REQUESTS} authorizations on 2 servers, primary SIGKILLed after {KILL_AT} "
        f"({failover.in_flight} in flight) and the standby promoted in "
        f"{failover.promoted_at - failover.killed_at:.2f} s: serving again "
        f"{first_answer - failover.killed_at:.2f} s after the kill; {len(retried)} requests "
        f"retried ({load.lost} retries in all: {_counts(load)}); "
        f"acknowledged payments lost: {len(lost)}"
    )


def _check_same_servers_serve_again(
    cluster: Cluster, started: dict[str, int], requests: list[Request], failover: Failover
) -> None:
    now = {server.url: server.process.pid for server in cluster.servers()}
    assert now == started, "a server process was restarted or died"
    assert all(server.process.poll() is None for server in cluster.servers())
    answered = {r.answered_by for r in requests if r.sent_at >= failover.promoted_at}
    assert answered == set(started), f"only {answered} answered after the promotion"


def _check_failures_were_explained(cluster: Cluster, load: Load) -> None:
    """A merchant whose answer was lost was told why in a way it can act on: the database
    is unavailable (nothing written) or the outcome is unknown (retry with the key)."""
    unexplained = set(load.errors) - EXPLAINED
    assert not unexplained, f"answers that explain nothing: {dict(load.errors)}"
    for server in cluster.servers():
        assert "Traceback" not in server.log(), server.log()


def _acknowledged_but_missing(pair: pg_cluster.Pair, requests: list[Request]) -> list[str]:
    """Approvals merchants hold that the promoted standby does not have."""
    with psycopg.connect(pair.standby.url, autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    answers = [r.answer for r in requests if r.answer]
    approved = {str(a["payment_id"]) for a in answers if a["status"] == "approved"}
    db = open_database(pair.standby.url)
    try:
        present = db.run(stored_payments)
    finally:
        db.close()
    return sorted(approved - set(present))


def _counts(load: Load) -> str:
    return ", ".join(f"{what}: {n}" for what, n in sorted(load.errors.items())) or "none"
