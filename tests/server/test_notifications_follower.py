"""A follower of an owner's notification stream on PostgreSQL sees every entry exactly once, in
order, while many writers for that owner commit out of step (issue hole 7).

``seq`` is taken at INSERT, not at COMMIT: without the per-owner advisory lock in
:func:`nfcpay.server.services.notifications.notify`, a writer that inserted first and commits
last leaves a gap a follower has already paged past (``seq > cursor``) and never fills. The
interleaving is forced, not hoped for: each writer inserts and then holds its transaction open
until the test releases it, and the test moves on only once every writer is parked (holding,
committed, or waiting on a lock, as PostgreSQL's ``pg_stat_activity`` says), so the run is
the same every time whether or not the lock is there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from nfcpay.server.services import notifications
from nfcpay.server.store import Database
from nfcpay.testing.server import InProcessServer, postgres_schema, register_terminal

pytestmark = pytest.mark.postgres

WRITERS = 8
SETTLE_TIMEOUT_S = 10.0


class Writer(threading.Thread):
    """Writes one notification through the real service function in its own transaction,
    then keeps that transaction open until :attr:`release` is set."""

    def __init__(self, db: Database, owner: str, message: str) -> None:
        super().__init__(name=f"writer-{message}", daemon=True)
        self.db, self.owner, self.message = db, owner, message
        self.backend_pid: int | None = None
        self.inserted, self.release, self.done = (threading.Event() for _ in range(3))
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.db.run(self._work)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
        finally:
            self.done.set()

    def _work(self, tx: Any) -> None:
        self.backend_pid = int(tx.scalar("SELECT pg_backend_pid()"))
        notifications.notify(tx, 0, self.owner, "grant_used", self.message)
        self.inserted.set()
        if not self.release.wait(SETTLE_TIMEOUT_S):
            raise TimeoutError(f"{self.name} was never released")


class Observer:
    """Tells when every writer is parked, from a connection of its own."""

    def __init__(self, url: str) -> None:
        import psycopg

        self._conn = psycopg.connect(url, autocommit=True)

    def waits_on_a_lock(self, pid: int | None) -> bool:
        if pid is None:
            return False
        row = self._conn.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
        return row is not None and row[0] == "Lock"

    def parked(self, writer: Writer) -> bool:
        holding = writer.inserted.is_set() and not writer.release.is_set()
        return writer.done.is_set() or holding or self.waits_on_a_lock(writer.backend_pid)

    def settle(self, writers: Sequence[Writer]) -> None:
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while not all(self.parked(writer) for writer in writers if writer.is_alive()):
            if time.monotonic() > deadline:
                raise TimeoutError("the writers did not settle")
            time.sleep(0.002)

    def close(self) -> None:
        self._conn.close()


@pytest.fixture
def pg_server(tmp_path: Path, postgres_url: str) -> Iterator[tuple[InProcessServer, str]]:
    with postgres_schema(postgres_url) as url, InProcessServer(tmp_path, db_url=url) as server:
        yield server, url


def test_a_follower_sees_every_entry_once_in_order_under_concurrent_writers(
    pg_server: tuple[InProcessServer, str],
) -> None:
    from nfcpay.server.store.postgres import PostgresDatabase

    server, url = pg_server
    owner = register_terminal(server.url, "user", http=server.http)
    seen: list[str] = []
    cursor: str | None = None

    def follow() -> None:
        """One read of the stream the way ``notifications --follow`` reads it: the API's
        GET /v1/notifications?after=<last id seen>."""
        nonlocal cursor
        news = owner.client.notifications(after=cursor)
        seen.extend(item["message"] for item in news)
        if news:
            cursor = news[-1]["notification_id"]

    writers_db = PostgresDatabase(url, pool_size=WRITERS)
    observer = Observer(url)
    writers = [Writer(writers_db, owner.terminal_id, f"n{k}") for k in range(WRITERS)]
    try:
        for writer in writers:  # each inserts (or queues behind the lock) and holds
            writer.start()
            observer.settle(writers)
            follow()
        for writer in reversed(writers):  # the last to insert commits first
            writer.release.set()
            observer.settle(writers)
            follow()
        for writer in writers:
            writer.join(SETTLE_TIMEOUT_S)
            assert writer.error is None, writer.error
        follow()
    finally:
        for writer in writers:
            writer.release.set()
        observer.close()
        writers_db.close()

    stream = server.query(
        lambda tx: [
            row["message"]
            for row in tx.all(
                "SELECT message FROM notifications WHERE owner_terminal = ? ORDER BY seq",
                (owner.terminal_id,),
            )
        ]
    )
    assert sorted(stream) == [writer.message for writer in writers]
    assert seen == stream, "the follower missed or repeated entries of the stream"
