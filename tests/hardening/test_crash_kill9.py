"""Crash safety (issue 6): ``kill -9`` the server at random moments during 1,000+ concurrent
authorizations, restart it on the same database, and check that no money was lost or made up.

The test plays the merchants (32 threads, several grants, some running out mid-run so
declines race approvals) and, with PostgreSQL, the load balancer in front of two server
processes (round-robin over the live ones). Between three and five times, at a random moment
mid-load, it sends SIGKILL to the server (or, on PostgreSQL, to one or both processes) and
starts it again on the same database. A request whose answer was lost may or may not have
committed; the merchant asks again with the SAME Idempotency-Key and body (after restart, or
through the other process), and gets the stored first answer or a fresh decision. When
every request has an answer, all servers are killed once more (the last answers must be
durable too) and restarted, and then:

* the payments in the database are exactly the approvals merchants hold (none missing, none
  nobody knows of), each with its amount and grant share, so no key was charged twice and
  no declined request charged anything;
* :func:`nfcpay.server.ledger.audit` is clean;
* every grant's remaining amount and uses equal its cap minus its approved payments, and
  every funding source is charged exactly the approved payments (read through the API);
* approvals replay unchanged with their keys.

The plan (amounts, grants, kill moments, victims) comes from a seed printed with every run
and attached to a failure; rerun it with ``NFCPAY_CRASH_SEED=<seed>``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.payment_load import (
    Cluster,
    Load,
    drive,
    plan,
    scenes,
    seeded,
    verify,
    wait_settled,
)

pytestmark = pytest.mark.slow

REQUESTS = 1_100
KILLS = (3, 5)


def _kills(cluster: Cluster, rng: random.Random) -> Callable[[Load], None]:
    """Kill -9 one or more processes once in each of 3 to 5 equal stretches of the middle
    80 % of the load, at a random moment."""

    def disrupt(load: Load) -> None:
        kills = rng.randint(*KILLS)
        stretch = load.total * 8 // 10 // kills
        first = load.total // 10
        for moment in (first + i * stretch + rng.randrange(stretch) for i in range(kills)):
            wait_settled(load, moment)
            time.sleep(rng.uniform(0, 0.05))
            up = cluster.live()
            victims = sorted(rng.sample(up, rng.randint(1, len(up))))
            load.crashes.append(f"{victims} at {load.settled} settled, {load.in_flight} in flight")
            cluster.kill(victims)

    return disrupt


def _crash_test(name: str, data_dir: Path, db_url: str | None, processes: int) -> None:
    started = time.monotonic()
    with seeded(name, "NFCPAY_CRASH_SEED") as rng:
        cluster = Cluster(data_dir, db_url, processes)
        try:
            grants = scenes(cluster.server().url)
            requests = plan(rng, grants, REQUESTS, "crash")
            load = drive(cluster, requests, _kills(cluster, rng))
            assert load.lost > 0, f"no kill cost an answer ({load.crashes}): nothing was tested"
            # The last answers must survive a crash too: kill everything once more.
            cluster.recovered()
            cluster.kill(cluster.live())
            cluster.recovered()
            verify(cluster, rng, grants, requests)
        finally:
            cluster.close()
    approved = sum(1 for r in requests if r.answer and r.answer["status"] == "approved")
    replayed = sum(1 for r in requests if r.lost and r.answer and r.answer.get("replayed"))
    print(
        f"{name}: {len(requests)} requests, {load.lost} answers lost, "
        f"{approved} approved ({replayed} of them replayed after a lost answer), "
        f"{len(requests) - approved} declined; crashes: {'; '.join(load.crashes)}; "
        f"{time.monotonic() - started:.1f} s"
    )


def test_sqlite_survives_kill9_during_concurrent_authorizations(tmp_path: Path) -> None:
    _crash_test("sqlite", tmp_path / "srv", None, processes=1)


@pytest.mark.postgres
def test_postgres_two_processes_survive_kill9(tmp_path: Path, pg_url: str) -> None:
    _crash_test("postgres", tmp_path / "srv", pg_url, processes=2)
