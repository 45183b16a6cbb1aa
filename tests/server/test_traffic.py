"""The database traffic counter that scripts/bench_server.py reports per approval
(:mod:`nfcpay.testing.traffic`): it counts what reaches the driver, on both databases."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from nfcpay.server.store import Database, Tx
from nfcpay.testing.traffic import Traffic, _tally, counted
from tests.support.harness import Api


def _selects(count: int, *, pipelined: bool = False) -> Callable[[Tx], None]:
    def work(tx: Tx) -> None:
        with tx.pipeline() if pipelined else contextlib.nullcontext():
            for n in range(count):
                tx.execute("SELECT ? AS n", (n,))

    return work


def _count(db: Database, work: Callable[[Tx], None]) -> Traffic:
    db.run(work)  # once before: PostgreSQL prepares a statement at its first use
    with counted(db) as traffic:
        db.run(work)
    return traffic


def test_every_statement_counts_and_a_pipeline_is_one_round_trip(api: Api) -> None:
    db = api.server.runtime.db
    one, three = _count(db, _selects(1)), _count(db, _selects(3))
    assert three.statements - one.statements == 2
    piped = _count(db, _selects(3, pipelined=True))
    assert piped.statements == three.statements
    if db.dialect == "sqlite":
        # BEGIN IMMEDIATE, SAVEPOINT, the SELECT, RELEASE, COMMIT: all reach SQLite.
        assert one.statements == 5
        assert one.round_trips is None and piped.round_trips is None
        return
    assert one.round_trips is not None and three.round_trips is not None
    assert three.round_trips - one.round_trips == 2
    assert piped.round_trips == one.round_trips  # three statements, one wait


def test_nothing_is_counted_outside_the_block(api: Api) -> None:
    db = api.server.runtime.db
    with counted(db) as traffic:
        pass
    db.run(_selects(2))
    assert traffic.statements == 0


def test_a_libpq_trace_is_tallied_by_statements_ended_and_direction_changes() -> None:
    trace = "\n".join([
        'F\t10\tQuery\t "BEGIN;\\nEXECUTE nfcpay_0(1)"',  # one message, two statements
        'B\t10\tCommandComplete\t "BEGIN"',
        "B\t25\tRowDescription\t 1 \"n\" 0 0 23 4 -1 0",
        "B\t11\tDataRow\t 1 1 '1'",
        'B\t13\tCommandComplete\t "SELECT 1"',
        "B\t5\tReadyForQuery\t T",
        'F\t16\tParse\t "" "select 2" 0',  # psycopg's extended protocol: ended by its answer
        'F\t14\tBind\t "" "" 0 0 1 0',
        "F\t9\tExecute\t \"\" 0",
        "F\t4\tSync",
        "B\t4\tParseComplete",
        'B\t13\tErrorResponse\t S "ERROR" C "42P01"',
        "B\t5\tReadyForQuery\t E",
        'F\t11\tQuery\t "ROLLBACK"',
        'B\t13\tCommandComplete\t "ROLLBACK"',
        "B\t5\tReadyForQuery\t I",
    ])  # fmt: skip
    traffic = Traffic(round_trips=0)
    _tally(trace, traffic)
    assert (traffic.statements, traffic.round_trips) == (4, 3)
    assert traffic.per(2) == (2.0, 1.5)


def test_an_approval_takes_three_round_trips_on_postgresql(api: Api) -> None:
    """BEGIN, the nonce and every read the rules need in one round trip, the writes in a
    second, COMMIT in the third; on SQLite, statements alone count (none per ledger leg)."""
    scene = api.scene(max_uses=5)
    db = api.server.runtime.db
    # The merchant's and the terminals' rows are cached from now on, and (PostgreSQL) the
    # statements prepared on the connection, as on a server that has run for a while.
    scene.pay(100)
    with counted(db) as one_leg_each:
        assert scene.pay(100)["status"] == "approved"
    if db.dialect == "postgresql":
        assert one_leg_each.round_trips == 3
    # A second grant adds its own rows, never a statement per ledger leg or share.
    other = scene.another_grant(amount_cap=50_000, max_uses=5)
    shares = [(scene.grant_id, scene.usage_auth(), 50), (other.grant_id, other.usage_auth(), 50)]
    scene.pay(100, grants=shares)  # its statements name two grants: prepared now
    with counted(db) as two_grants:
        assert scene.pay(100, grants=shares)["status"] == "approved"
    if db.dialect == "postgresql":
        assert two_grants.round_trips == 3
    # One more grant UPDATE and notification (with its advisory lock on PostgreSQL).
    extra = 2 if db.dialect == "sqlite" else 3
    assert two_grants.statements == one_leg_each.statements + extra
