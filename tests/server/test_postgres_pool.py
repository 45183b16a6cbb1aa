"""PostgreSQL connection pool (nfcpay.server.store.postgres, on psycopg_pool): at most
``pool_size`` connections, no extra statement per transaction, a connection that died while
idle is replaced and the transaction run again, an unreachable server answers 503 at once
(with its reason) and the same database recovers by itself when the server returns; a
connection lost during COMMIT is reported as an unknown outcome and not run again."""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from nfcpay.errors import ConfigError, DatabaseOutcomeUnknown, DatabaseUnavailable
from nfcpay.server.app import create_runtime
from nfcpay.server.settings import ServerSettings, init_data_dir
from nfcpay.server.store import Tx, open_database
from nfcpay.server.store.postgres import MAX_DEFAULT_POOL_SIZE, PostgresDatabase, default_pool_size
from nfcpay.testing.query_plans import observed
from nfcpay.testing.traffic import counted
from tests.support.network import TcpProxy

#: A timeout far longer than the bound the tests check: only a real wait-out fails them,
#: never a slow machine.
WAIT_OUT_S = 60.0


@pytest.fixture
def app_name() -> str:
    return f"nfcpay_pool_{secrets.token_hex(4)}"


@pytest.fixture
def named_url(postgres_url: str, app_name: str) -> str:
    """The test database, with an application_name that singles out this test's sessions."""
    separator = "&" if "?" in postgres_url else "?"
    return f"{postgres_url}{separator}application_name={app_name}"


@pytest.fixture
def db(named_url: str) -> Iterator[PostgresDatabase]:
    database = PostgresDatabase(named_url, pool_size=3, timeout_s=2.0)
    yield database
    database.close()


def sessions(postgres_url: str, app_name: str) -> list[int]:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app_name,)
        ).fetchall()
    return [pid for (pid,) in rows]


def terminate(postgres_url: str, app_name: str) -> int:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (app_name,),
        ).fetchall()
    return len(rows)


def backend_pid(tx: Tx) -> int:
    return int(tx.scalar("SELECT pg_backend_pid() AS pid"))


@pytest.mark.postgres
def test_one_connection_from_the_start_and_no_statement_added_per_transaction(
    db: PostgresDatabase, postgres_url: str, app_name: str
) -> None:
    assert len(sessions(postgres_url, app_name)) == 1
    with observed(db) as seen, counted(db) as traffic:
        assert db.run(lambda tx: tx.scalar("SELECT 41 + 1 AS answer")) == 42
    # No liveness check before the connection is handed out: the one statement and the
    # transaction's BEGIN (sent with it, in one message) are all, then psycopg's COMMIT.
    assert [s.sql for s in seen] == ["BEGIN", "SELECT 41 + 1 AS answer"]
    assert (traffic.statements, traffic.round_trips) == (3, 2)


@pytest.mark.postgres
def test_at_most_pool_size_connections_then_busy(
    db: PostgresDatabase, postgres_url: str, app_name: str
) -> None:
    held, release = threading.Barrier(4), threading.Event()

    def hold(tx: Tx) -> int:
        pid = backend_pid(tx)
        held.wait(10)
        release.wait(10)
        return pid

    results: list[int] = []
    workers = [threading.Thread(target=lambda: results.append(db.run(hold))) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        held.wait(10)
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match=r"connections are busy \(waited 2 s\)"):
            db.run(backend_pid)
        assert time.monotonic() - started > 1.5, "it waited for a connection first"
        assert len(sessions(postgres_url, app_name)) == 3
    finally:
        release.set()
        for worker in workers:
            worker.join(10)
    assert len(set(results)) == 3
    assert db.run(backend_pid) in results  # returned connections are reused


@pytest.mark.postgres
def test_the_servers_pool_size_comes_from_its_environment(
    tmp_path: Path, named_url: str, postgres_url: str, app_name: str
) -> None:
    """NFCPAY_SERVER_DB_POOL_SIZE=2: two transactions hold both connections, a third waits
    its turn out (503) instead of opening one more."""
    env = {"NFCPAY_SERVER_DB_POOL_SIZE": "2", "NFCPAY_SERVER_DB_TIMEOUT": "0.5"}
    init_data_dir(tmp_path)
    settings = dataclasses.replace(
        ServerSettings.from_env(env), data_dir=tmp_path, db_url=named_url
    )
    rt = create_runtime(settings)
    held, release = threading.Barrier(3), threading.Event()

    def hold(tx: Tx) -> None:
        held.wait(10)
        release.wait(10)

    workers = [threading.Thread(target=rt.db.run, args=(hold,)) for _ in range(2)]
    try:
        for worker in workers:
            worker.start()
        held.wait(10)
        with pytest.raises(DatabaseUnavailable, match="connections are busy"):
            rt.db.run(backend_pid)
        assert len(sessions(postgres_url, app_name)) == 2
    finally:
        release.set()
        for worker in workers:
            worker.join(10)
        rt.db.close()


@pytest.mark.parametrize(("cpus", "size"), [(None, 2), (1, 2), (2, 4), (3, 6), (4, 8), (64, 8)])
def test_the_default_pool_is_twice_the_cpus_at_most_eight(
    monkeypatch: pytest.MonkeyPatch, cpus: int | None, size: int
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cpus)
    assert default_pool_size() == size <= MAX_DEFAULT_POOL_SIZE


@pytest.mark.postgres
def test_a_connection_killed_while_idle_is_replaced_and_the_work_run_again(
    db: PostgresDatabase, postgres_url: str, app_name: str
) -> None:
    before = db.run(backend_pid)
    assert terminate(postgres_url, app_name) == 1
    runs: list[int] = []

    def work(tx: Tx) -> int:
        runs.append(1)
        return backend_pid(tx)

    after = db.run(work)
    assert after != before
    assert len(runs) == 2, "the first run met the dead connection and was run again"
    alive = sessions(postgres_url, app_name)
    assert after in alive and before not in alive


@pytest.mark.postgres
def test_unreachable_server_answers_503_at_once_and_the_pool_recovers(
    postgres_url: str, app_name: str
) -> None:
    parts = urlsplit(postgres_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    try:
        separator = "&" if "?" in postgres_url else "?"
        url = proxy.url_for(f"{postgres_url}{separator}application_name={app_name}")
        db = PostgresDatabase(url, pool_size=3, timeout_s=WAIT_OUT_S)
        try:
            assert db.run(lambda tx: tx.scalar("SELECT 1 AS one")) == 1
            proxy.cut()
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(DatabaseUnavailable, match="cannot reach the payment database"):
                    db.run(lambda tx: tx.scalar("SELECT 1 AS one"))
                # The pool gave up connecting; nobody waits out the timeout.
                assert time.monotonic() - started < WAIT_OUT_S / 4
            proxy.restore()
            assert db.run(lambda tx: tx.scalar("SELECT 2 AS two")) == 2
        finally:
            db.close()
    finally:
        proxy.cut()


@pytest.mark.postgres
@pytest.mark.parametrize("committed", [True, False], ids=["committed", "rolled-back"])
def test_a_connection_lost_during_commit_is_an_unknown_outcome_not_run_again(
    postgres_url: str, app_name: str, committed: bool
) -> None:
    parts = urlsplit(postgres_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    table = f"commit_lost_{secrets.token_hex(4)}"
    separator = "&" if "?" in postgres_url else "?"
    db = PostgresDatabase(
        proxy.url_for(f"{postgres_url}{separator}application_name={app_name}"), timeout_s=2.0
    )
    runs: list[int] = []

    def insert(tx: Tx) -> None:
        runs.append(1)
        tx.execute(f"INSERT INTO {table} VALUES (1)")

    try:
        db.run(lambda tx: tx.execute(f"CREATE TABLE {table} (n int)"))
        proxy.trip(b"COMMIT", deliver=committed, after=b"INSERT INTO")
        with pytest.raises(DatabaseOutcomeUnknown, match="same Idempotency-Key"):
            db.run(insert)
        assert runs == [1], "a transaction that may have committed must not run again"
        count = db.run(lambda tx: tx.scalar(f"SELECT count(*) AS n FROM {table}"))
        assert count == (1 if committed else 0)
    finally:
        db.run(lambda tx: tx.execute(f"DROP TABLE IF EXISTS {table}"))
        db.close()
        proxy.cut()


@pytest.mark.postgres
def test_an_error_at_commit_on_a_live_connection_is_not_an_unknown_outcome(
    db: PostgresDatabase,
) -> None:
    table = f"deferred_{secrets.token_hex(4)}"
    db.run(
        lambda tx: tx.execute(f"CREATE TABLE {table} (n int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
    )
    try:
        with pytest.raises(psycopg.errors.UniqueViolation):
            db.run(lambda tx: tx.execute(f"INSERT INTO {table} VALUES (1), (1)"))
        assert db.run(lambda tx: tx.scalar("SELECT 1 AS one")) == 1
    finally:
        db.run(lambda tx: tx.execute(f"DROP TABLE {table}"))


def test_start_up_refuses_an_unreachable_server_with_its_reason() -> None:
    closed = TcpProxy(("127.0.0.1", 9))
    closed.cut()
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"cannot connect to PostgreSQL: .*refused"):
        open_database(
            f"postgresql://postgres@127.0.0.1:{closed.port}/postgres", timeout_s=WAIT_OUT_S
        )
    assert time.monotonic() - started < WAIT_OUT_S / 4, "a refused connection is not waited out"


@pytest.mark.postgres
def test_a_closed_database_answers_unavailable(db: PostgresDatabase) -> None:
    db.close()
    with pytest.raises(DatabaseUnavailable, match="closing"):
        db.run(backend_pid)
