"""Several servers starting at once on one new SQLite database all come up.

Switching a new database to WAL answers "database is locked" at once while another process
holds the file (SQLite skips the busy handler there); CI saw a second server of a cluster die
on it. Each round below starts three processes on a fresh file at the same moment.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from nfcpay.server.store.sqlite import SqliteDatabase

ROUNDS = 20
PROCESSES = 3


def open_and_write(path: str) -> str:
    """Open the database as a server does, write to it, and say how that went."""
    try:
        db = SqliteDatabase(Path(path), timeout_s=10)
        try:
            db.run(lambda tx: tx.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
        finally:
            db.close()
    except Exception as error:  # reported to the test, which names it
        return repr(error)
    return "ok"


def test_processes_opening_one_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
        outcomes = []
        for round_ in range(ROUNDS):
            path = str(tmp_path / f"round{round_}.sqlite3")
            outcomes += list(pool.map(open_and_write, [path] * PROCESSES))
    assert [outcome for outcome in outcomes if outcome != "ok"] == []
