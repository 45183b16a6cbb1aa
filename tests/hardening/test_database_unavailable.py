"""Database unavailable: requests fail fast with 503 database_unavailable and a clear
message, nothing is half-written, and the same server process recovers by itself when the
database returns (issue 6, "Crash safety and faults").

Faults, all against real ``nfcpay server run`` processes:
* SQLite file locked by another process beyond the busy timeout;
* SQLite "disk full": the server's RLIMIT_FSIZE shrunk under its feet (writes fail EFBIG);
* PostgreSQL unreachable: the server talks to PostgreSQL through a TCP proxy that is cut
  (listener and connections closed) and restored — the machine's PostgreSQL keeps running;
* PostgreSQL backends killed with pg_terminate_backend: the next request reconnects;
* the PostgreSQL connection lost during a payment's COMMIT (after the database committed, or
  before): 503 database_outcome_unknown, and the same key then gets the real answer;
* PostgreSQL unreachable at start-up: the server refuses to start with a clear message.
"""

from __future__ import annotations

import resource
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from nfcpay.errors import ServerUnavailable
from nfcpay.testing.server import payment_scene, state_snapshot
from tests.support.harness import start_server
from tests.support.network import TcpProxy, health, no_retry
from tests.support.payment_load import Request

#: The server's wait for the database before answering 503 (fail fast in these tests).
DB_TIMEOUT = {"NFCPAY_SERVER_DB_TIMEOUT": "0.5"}


def _expect_503(call: object, code: str = "database_unavailable") -> ServerUnavailable:
    started = time.monotonic()
    with pytest.raises(ServerUnavailable) as caught:
        call()  # type: ignore[operator]
    assert time.monotonic() - started < 5, "503 must come fast, not after minutes of retries"
    error = caught.value
    assert (error.status, error.code) == (503, code), error.message
    assert error.retry_after_s is not None and error.retry_after_s >= 1
    return error


def test_sqlite_locked_by_another_process_503_then_recovers(tmp_path: Path) -> None:
    server = start_server(tmp_path / "srv", env=DB_TIMEOUT)
    with server:
        scene = payment_scene(server.url, max_uses=10)
        before = server.query(state_snapshot)
        merchant = no_retry(scene.merchant, server.url)
        owner = no_retry(scene.owner, server.url)

        locker = sqlite3.connect(server.database_url.removeprefix("sqlite:///"))
        locker.execute("BEGIN EXCLUSIVE")
        try:
            answer = health(server.url)
            assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
            body = answer.json()
            assert body["error"] == "database_unavailable"
            assert "locked" in body["message"]
            scene.merchant.client = merchant
            error = _expect_503(lambda: scene.pay(1_000, idempotency_key="k-locked"))
            assert "retry later" in error.message
            _expect_503(
                lambda: owner.issue_grant(
                    scene.source["source_id"],
                    [scene.target.terminal_id],
                    amount_cap=10,
                    currency="KRW",
                )
            )
        finally:
            locker.rollback()
            locker.close()

        assert server.query(state_snapshot) == before, "a 503 must leave nothing half-written"
        approved = scene.pay(1_000, idempotency_key="k-locked")
        assert approved["status"] == "approved" and approved["replayed"] is False
        assert server.audit() == []


def test_client_retries_503_until_the_lock_is_released(tmp_path: Path) -> None:
    with start_server(tmp_path / "srv", env=DB_TIMEOUT) as server:
        scene = payment_scene(server.url, max_uses=10)
        locker = sqlite3.connect(
            server.database_url.removeprefix("sqlite:///"), check_same_thread=False
        )
        locker.execute("BEGIN EXCLUSIVE")
        release = threading.Timer(0.8, locker.rollback)
        release.start()
        try:
            # Issuing a grant is not idempotent, yet a 503 database_unavailable is retried:
            # the server promises nothing was written.
            issued = scene.owner.client.issue_grant(
                scene.source["source_id"],
                [scene.target.terminal_id],
                amount_cap=500,
                currency="KRW",
            )
        finally:
            release.join()
            locker.close()
        assert issued["grant"]["remaining_amount"] == 500
        grants = scene.owner.client.list_grants()
        assert len(grants) == 2, "one retry after a 503 must not issue twice"
        assert scene.pay(700)["status"] == "approved"


@pytest.mark.skipif(sys.platform != "linux", reason="prlimit on another process is Linux-only")
def test_sqlite_disk_full_503_then_recovers(tmp_path: Path) -> None:
    with start_server(tmp_path / "srv", env=DB_TIMEOUT) as server:
        scene = payment_scene(server.url, max_uses=10)
        assert scene.pay(100)["status"] == "approved"
        before = server.query(state_snapshot)
        pid = server.process.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        # No file may grow any more: every write past the current end fails with EFBIG.
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, hard))
        try:
            scene.merchant.client = no_retry(scene.merchant, server.url)
            error = _expect_503(lambda: [scene.pay(100) for _ in range(20)])
            assert "cannot be written" in error.message or "database" in error.message
        finally:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))
        assert server.query(state_snapshot) == before
        assert scene.pay(100)["status"] == "approved"
        assert server.audit() == []


@pytest.mark.postgres
def test_postgres_unreachable_503_then_recovers(tmp_path: Path, pg_url: str) -> None:
    parts = urlsplit(pg_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    try:
        with start_server(tmp_path / "srv", db_url=proxy.url_for(pg_url), env=DB_TIMEOUT) as srv:
            scene = payment_scene(srv.url, max_uses=10)
            merchant = no_retry(scene.merchant, srv.url)
            scene.merchant.client = merchant
            assert scene.pay(1_000)["status"] == "approved"
            before = _snapshot(pg_url)

            proxy.cut()
            answer = health(srv.url)
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"] == "database_unavailable"
            assert "PostgreSQL" in answer.json()["message"] or "lost" in answer.json()["message"]
            _expect_503(lambda: scene.pay(1_000, idempotency_key="k-pg"))
            _expect_503(lambda: scene.pay(1_000, idempotency_key="k-pg"))
            assert _snapshot(pg_url) == before

            proxy.restore()
            approved = scene.pay(1_000, idempotency_key="k-pg")
            assert approved["status"] == "approved" and approved["replayed"] is False
            assert health(srv.url).status_code == 200
            assert srv.audit() == []
    finally:
        proxy.cut()


@pytest.mark.postgres
def test_postgres_backends_terminated_server_reconnects(tmp_path: Path, pg_url: str) -> None:
    app_name = f"nfcpay_hardening_{tmp_path.name[-12:]}"
    db_url = f"{pg_url}&application_name={app_name}"
    with start_server(tmp_path / "srv", db_url=db_url) as server:
        scene = payment_scene(server.url, max_uses=10)
        assert scene.pay(1_000)["status"] == "approved"
        killed = _terminate_backends(pg_url, app_name)
        assert killed >= 1
        # Every pooled connection is dead; the very next calls still succeed (one retry on
        # a fresh connection, before anything could have committed).
        scene.merchant.client = no_retry(scene.merchant, server.url)
        assert scene.pay(1_000)["status"] == "approved"
        assert scene.owner.client.list_grants()[0]["remaining_amount"] == 48_000
        assert server.audit() == []


@pytest.mark.postgres
@pytest.mark.parametrize("committed", [True, False], ids=["committed", "rolled-back"])
def test_postgres_connection_lost_during_commit_503_outcome_unknown(
    tmp_path: Path, pg_url: str, committed: bool
) -> None:
    parts = urlsplit(pg_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    try:
        with start_server(tmp_path / "srv", db_url=proxy.url_for(pg_url), env=DB_TIMEOUT) as srv:
            scene = payment_scene(srv.url, max_uses=10)
            merchant = no_retry(scene.merchant, srv.url)
            request = Request("k-commit", scene, 1_000, *scene.signed_means(1_000))
            before = _snapshot(pg_url)
            # The COMMIT reaches PostgreSQL and its answer is lost, or it never arrives.
            proxy.trip(b"COMMIT", deliver=committed, after=b"INSERT INTO payments")
            error = _expect_503(lambda: request.send(merchant), code="database_outcome_unknown")
            assert proxy.tripped.is_set()
            assert "same Idempotency-Key" in error.message
            assert (_snapshot(pg_url) != before) is committed

            answer = request.send(merchant)
            merchant.close()
            assert answer["status"] == "approved"
            assert answer["replayed"] is committed, "the committed payment must be replayed"
            assert len(srv.query(lambda tx: tx.all("SELECT payment_id FROM payments"))) == 1
            assert srv.audit() == []
            assert "Traceback" not in srv.log(), srv.log()
    finally:
        proxy.cut()


@pytest.mark.postgres
def test_postgres_unreachable_at_start_refuses_clearly(tmp_path: Path) -> None:
    closed = TcpProxy(("127.0.0.1", 9))  # any port; cut at once, so nothing listens
    closed.cut()
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nfcpay",
            "server",
            "run",
            "--data-dir",
            str(tmp_path),
            "--port",
            "0",
            "--db",
            f"postgresql://postgres@127.0.0.1:{closed.port}/postgres",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert time.monotonic() - started < 30
    assert "cannot connect to PostgreSQL" in result.stderr + result.stdout


def _snapshot(db_url: str) -> dict[str, list[tuple[object, ...]]]:
    from nfcpay.server.store import open_database

    db = open_database(db_url)
    try:
        return db.run(state_snapshot)
    finally:
        db.close()


def _terminate_backends(base_url: str, app_name: str) -> int:
    with psycopg.connect(base_url.split("?")[0], autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (app_name,),
        ).fetchall()
    return len(rows)
