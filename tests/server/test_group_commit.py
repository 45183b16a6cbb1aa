"""SQLite group commit (nfcpay.server.store.sqlite.SqliteDatabase): many ``run`` calls share one
transaction and one COMMIT, each in its own savepoint, and learn their outcome only once the
COMMIT succeeded. A real SQLite file throughout; the writer is held on purpose (a unit that
waits on an event) so that the next batch deterministically holds the units queued meanwhile.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfcpay.errors import DatabaseUnavailable
from nfcpay.server.store.base import MAX_ATTEMPTS, RetryableConflict, Tx
from nfcpay.server.store.sqlite import SqliteDatabase


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SqliteDatabase]:
    database = SqliteDatabase(tmp_path / "group.sqlite3", timeout_s=2.0)
    database.run(lambda tx: tx.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
    database.run(lambda tx: tx.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
    database.run(
        lambda tx: tx.execute(
            "CREATE TABLE child (pid INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
    )
    yield database
    database.close()


def insert(k: int) -> Callable[[Tx], int]:
    def work(tx: Tx) -> int:
        tx.execute("INSERT INTO t (k) VALUES (?)", (k,))
        return k

    return work


def failing(k: int) -> Callable[[Tx], int]:
    def work(tx: Tx) -> int:
        tx.execute("INSERT INTO t (k) VALUES (?)", (k,))
        raise ValueError(f"unit {k} refuses")

    return work


def keys(db: SqliteDatabase) -> set[int]:
    return {row["k"] for row in db.run(lambda tx: tx.all("SELECT k FROM t"))}


@contextmanager
def one_batch(db: SqliteDatabase, pool: ThreadPoolExecutor) -> Iterator[list[Future[Any]]]:
    """Hold the writer, let the caller queue units (as futures), then release it: every
    unit queued meanwhile runs in the next batch."""
    gate, holding = threading.Event(), threading.Event()

    def hold(tx: Tx) -> None:
        holding.set()
        assert gate.wait(10)

    held = pool.submit(db.run, hold)
    assert holding.wait(10)
    futures: list[Future[Any]] = []
    batches = db.batches
    try:
        yield futures
        deadline = time.monotonic() + 10
        while db.queued() < len(futures) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert db.queued() == len(futures)
    finally:
        gate.set()
        held.result(10)
    for future in futures:
        future.exception(10)
    assert db.batches - batches == 1, "one batch for every unit queued meanwhile"


def test_queued_units_share_one_commit_and_keep_their_own_results(db: SqliteDatabase) -> None:
    with ThreadPoolExecutor(20) as pool:
        with one_batch(db, pool) as futures:
            futures += [pool.submit(db.run, insert(k)) for k in range(16)]
        assert [f.result() for f in futures] == list(range(16))
    assert keys(db) == set(range(16))


def test_a_failing_unit_rolls_back_only_its_savepoint(db: SqliteDatabase) -> None:
    with ThreadPoolExecutor(8) as pool:
        with one_batch(db, pool) as futures:
            futures += [pool.submit(db.run, insert(1)), pool.submit(db.run, failing(2))]
            futures += [pool.submit(db.run, insert(2)), pool.submit(db.run, insert(3))]
        assert futures[0].result() == 1
        with pytest.raises(ValueError, match="unit 2 refuses"):
            futures[1].result()
        assert [futures[2].result(), futures[3].result()] == [2, 3]
    assert keys(db) == {1, 2, 3}


def test_a_constraint_error_is_that_units_own(db: SqliteDatabase) -> None:
    db.run(insert(7))
    with ThreadPoolExecutor(4) as pool:
        with one_batch(db, pool) as futures:
            futures += [pool.submit(db.run, insert(7)), pool.submit(db.run, insert(8))]
        with pytest.raises(sqlite3.IntegrityError):
            futures[0].result()
        assert futures[1].result() == 8
    assert keys(db) == {7, 8}


def test_a_failed_commit_fails_every_unit_of_the_batch(db: SqliteDatabase) -> None:
    """A deferred foreign key is checked at COMMIT: one orphan fails the whole batch, and
    no unit was told it succeeded before that COMMIT."""

    def orphan(tx: Tx) -> str:
        tx.execute("INSERT INTO child (pid) VALUES (42)")
        return "orphan written"

    with ThreadPoolExecutor(8) as pool:
        with one_batch(db, pool) as futures:
            futures += [pool.submit(db.run, insert(1)), pool.submit(db.run, orphan)]
            futures += [pool.submit(db.run, insert(2))]
        for future in futures:
            with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
                future.result()
    assert keys(db) == set()
    assert db.run(insert(3)) == 3, "the writer carries on after a failed COMMIT"
    assert keys(db) == {3}


def test_a_lost_race_is_run_again(db: SqliteDatabase) -> None:
    attempts = []

    def flaky(tx: Tx) -> int:
        attempts.append(1)
        tx.execute("INSERT INTO t (k) VALUES (?)", (len(attempts),))
        if len(attempts) < 3:
            raise RetryableConflict("lost")
        return len(attempts)

    assert db.run(flaky) == 3
    assert keys(db) == {3}, "the losing attempts' writes were rolled back"

    def hopeless(tx: Tx) -> None:
        raise RetryableConflict("always")

    with pytest.raises(RetryableConflict):
        db.run(hopeless)
    assert db.run(lambda tx: "still serving") == "still serving"
    assert MAX_ATTEMPTS > 3


def test_locked_file_answers_unavailable_quickly_for_every_waiting_unit(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    fast = SqliteDatabase(path, timeout_s=0.2)
    locker = sqlite3.connect(path)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(fast.run, lambda tx: tx.scalar("SELECT 1 AS one"))]
            futures += [pool.submit(fast.run, lambda tx: 2) for _ in range(7)]
            errors = [f.exception(10) for f in futures]
        assert all(isinstance(e, DatabaseUnavailable) for e in errors), errors
        assert any("locked" in e.message for e in errors if isinstance(e, DatabaseUnavailable))
        locker.rollback()
        assert fast.run(lambda tx: tx.scalar("SELECT 1 AS one")) == 1
    finally:
        locker.close()
        fast.close()


def test_close_drains_queued_units_then_refuses_new_ones(db: SqliteDatabase) -> None:
    with ThreadPoolExecutor(8) as pool:
        closing: list[Future[None]] = []
        with one_batch(db, pool) as futures:
            futures += [pool.submit(db.run, insert(k)) for k in range(5)]
            deadline = time.monotonic() + 10
            while db.queued() < 5 and time.monotonic() < deadline:
                time.sleep(0.001)
            closing.append(pool.submit(db.close))
        closing[0].result(10)
        assert [f.result() for f in futures] == list(range(5))
    with pytest.raises(DatabaseUnavailable, match="closing"):
        db.run(insert(9))
    check = sqlite3.connect(db.path)
    try:
        assert {k for (k,) in check.execute("SELECT k FROM t")} == set(range(5))
    finally:
        check.close()


def test_run_inside_a_unit_is_refused(db: SqliteDatabase) -> None:
    with pytest.raises(RuntimeError, match="wait for itself"):
        db.run(lambda tx: db.run(insert(1)))
    assert keys(db) == set()


def test_run_async_batches_concurrent_callers(db: SqliteDatabase) -> None:
    async def main() -> list[int]:
        return await asyncio.gather(*(db.run_async(insert(k)) for k in range(200)))

    batches = db.batches
    assert asyncio.run(main()) == list(range(200))
    assert keys(db) == set(range(200))
    assert db.batches - batches < 200


def test_many_threads_many_units(db: SqliteDatabase) -> None:
    def client(base: int) -> list[int]:
        return [db.run(insert(base + i)) for i in range(25)]

    batches = db.batches
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(client, range(0, 16 * 100, 100)))
    assert results == [[base + i for i in range(25)] for base in range(0, 1600, 100)]
    assert keys(db) == {base + i for base in range(0, 1600, 100) for i in range(25)}
    assert db.batches - batches <= 16 * 25


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(plan=st.lists(st.sampled_from(["ok", "raise", "duplicate"]), min_size=1, max_size=12))
def test_every_unit_gets_its_own_outcome(db: SqliteDatabase, plan: list[str]) -> None:
    """Whatever mix of succeeding, raising and constraint-violating units shares a batch,
    the committed rows are exactly those of the units that succeeded."""
    db.run(lambda tx: tx.execute("DELETE FROM t"))
    db.run(insert(-1))
    work = {"ok": insert, "raise": failing, "duplicate": lambda k: insert(-1)}
    with ThreadPoolExecutor(len(plan) + 1) as pool:
        with one_batch(db, pool) as futures:
            futures += [pool.submit(db.run, work[kind](k)) for k, kind in enumerate(plan)]
        for k, (kind, future) in enumerate(zip(plan, futures, strict=True)):
            if kind == "ok":
                assert future.result() == k
            else:
                assert isinstance(future.exception(), ValueError | sqlite3.IntegrityError)
    assert keys(db) == {-1} | {k for k, kind in enumerate(plan) if kind == "ok"}


def test_a_unit_without_a_turn_in_time_is_withdrawn_and_never_runs(tmp_path: Path) -> None:
    slow = SqliteDatabase(tmp_path / "slow.sqlite3", timeout_s=0.2)
    ran: list[str] = []
    gate = threading.Event()
    try:
        with ThreadPoolExecutor(2) as pool:
            held = pool.submit(slow.run, lambda tx: gate.wait(10))
            while slow.queued():  # the holding unit is in a batch, the writer is busy
                time.sleep(0.001)

            async def late() -> None:
                await slow.run_async(lambda tx: ran.append("async"))

            with pytest.raises(DatabaseUnavailable, match=r"no turn within 0\.2 s"):
                asyncio.run(late())
            with pytest.raises(DatabaseUnavailable, match=r"no turn within 0\.2 s"):
                slow.run(lambda tx: ran.append("blocking"))
            gate.set()
            assert held.result(10) is True
        assert slow.run(lambda tx: "next") == "next"
        assert ran == [], "a withdrawn unit must not run after its caller was answered 503"
    finally:
        gate.set()
        slow.close()


def sqlite_temporary_files() -> list[str]:
    """This process's open SQLite temporary files (made as ``etilqs_…`` and unlinked at once,
    so only /proc/self/fd still names them)."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = fd.readlink()
        except OSError:  # closed meanwhile
            continue
        if "etilqs_" in str(target):
            found.append(str(target))
    return found


def test_a_units_savepoint_journal_stays_in_memory(db: SqliteDatabase) -> None:
    """A unit that changes more existing pages than SQLite's 64 KiB spill threshold (as an
    approval does) still writes no temporary file; rolling it back still restores them."""
    rows = [(k, "x" * 1000) for k in range(400)]  # about 100 pages of 4 KiB
    db.run(lambda tx: tx.execute("CREATE TABLE wide (k INTEGER PRIMARY KEY, v TEXT)"))
    db.run(lambda tx: tx.insert("wide (k, v)", rows))
    seen: list[list[str]] = []

    def rewrite_every_page(tx: Tx) -> None:
        tx.execute("UPDATE wide SET v = 'y' || substr(v, 2)")
        seen.append(sqlite_temporary_files())
        raise ValueError("roll this unit back")

    with pytest.raises(ValueError, match="roll this unit back"):
        db.run(rewrite_every_page)
    assert seen == [[]]
    values = db.run(lambda tx: {row["v"] for row in tx.all("SELECT v FROM wide")})
    assert values == {"x" * 1000}
