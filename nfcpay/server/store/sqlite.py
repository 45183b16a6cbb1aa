"""SQLite: one connection, one writer thread, group commit.

One connection in WAL mode with ``synchronous=FULL`` (durable commits), owned by ONE writer
thread that does *group commit*: every :meth:`SqliteDatabase.run` call is queued, and the
writer runs whatever is queued (a batch) inside one ``BEGIN IMMEDIATE`` transaction (which
also serializes against other processes, with a busy timeout), each unit of work in its own
``SAVEPOINT``. A unit that raises rolls back only its savepoint and gets its exception; the
batch then COMMITs once (one fsync for many approvals) and only after that COMMIT succeeded
does any unit learn its outcome, so nothing is answered before it is on disk. A failed COMMIT
fails every unit of the batch (a failed SQLite COMMIT certainly rolled back, so an unusable
database is answered :class:`~nfcpay.errors.DatabaseUnavailable`). No row locks are needed.

Async callers (the HTTP handlers) use :meth:`SqliteDatabase.run_async`: it queues the unit for
the writer and awaits its outcome on the event loop, with no thread-pool hop.

The database is for the server's user only (:func:`keep_private`): a new file is created mode
0600 (SQLite gives its ``-wal`` and ``-shm`` the database file's mode), and an existing one that
others may read is tightened to 0600 when the database is opened, with a warning in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import sqlite3
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from nfcpay.errors import DatabaseUnavailable
from nfcpay.server.store.base import (
    DEFAULT_TIMEOUT_S,
    MAX_ATTEMPTS,
    Database,
    RetryableConflict,
    Tx,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: SQLite primary result codes that mean "the database is unusable right now", not a bug:
#: BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
_SQLITE_UNAVAILABLE = frozenset({5, 6, 8, 10, 13, 14, 15})
#: At most this many units share one SQLite transaction (one COMMIT, one fsync).
MAX_BATCH = 128


#: The files SQLite keeps for a database in WAL mode, by suffix.
_FILE_SUFFIXES = ("", "-wal", "-shm")


def keep_private(path: Path) -> None:
    """Make the database at ``path`` and its WAL files readable by this user only.

    A missing database file is created empty with mode 0600 before SQLite opens it. One that
    exists with group or other access is tightened rather than refused or merely reported:
    every database made before this rule came in is 0644 under the usual umask, so refusing
    would stop every existing server and a warning would leave them all open. The warning
    says what changed, for anyone who relied on that access (use ``sqlite3 … .backup`` as the
    server's user instead).
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError:
        return  # no such directory, or not writable: sqlite3.connect reports it
    for file in (path.with_name(path.name + suffix) for suffix in _FILE_SUFFIXES):
        _tighten(file)


def _tighten(file: Path) -> None:
    try:
        mode = stat.S_IMODE(file.stat().st_mode)
    except FileNotFoundError:
        return
    if not mode & 0o077:
        return
    try:
        file.chmod(mode & 0o700)
    except OSError as exc:
        log.warning(
            "database file %s is open to other users (mode %o) and could not be made "
            "private (%s): run chmod 600 %s",
            file,
            mode,
            exc.strerror,
            file,
        )
        return
    log.warning(
        "database file %s was open to other users (mode %o); made it private (mode %o)",
        file,
        mode,
        mode & 0o700,
    )


class SqliteTx(Tx):
    """A transaction (a unit's savepoint) on the writer's connection: sqlite3 speaks ``?``."""

    dialect = "sqlite"


class _Unit:
    """One queued :meth:`SqliteDatabase.run` call and, once the writer is done, its outcome.

    ``state`` moves QUEUED → TAKEN (the writer put it in a batch) or QUEUED → CANCELLED (its
    caller gave up waiting for a turn), under the writer's condition lock. ``deliver`` is
    called once, from the writer thread, after the batch's COMMIT (or its failure).
    """

    __slots__ = ("attempts", "deliver", "error", "result", "state", "work")

    QUEUED, TAKEN, CANCELLED = 0, 1, 2

    def __init__(self, work: Callable[[Tx], Any], deliver: Callable[[], None]) -> None:
        self.work = work
        self.deliver = deliver
        self.state = _Unit.QUEUED
        self.attempts = 0
        self.result: Any = None
        self.error: BaseException | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


def enter_wal_mode(conn: sqlite3.Connection, timeout_s: float) -> None:
    """Switch ``conn``'s database to WAL, waiting up to ``timeout_s`` for other processes.

    Changing the journal mode answers "database is locked" at once, without the busy handler,
    while another connection holds the file (several servers starting on one new database do
    exactly that), so the wait is here: retried with a short backoff until the deadline.
    """
    deadline = time.monotonic() + timeout_s
    pause = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(
        self, path: Path, *, timeout_s: float = DEFAULT_TIMEOUT_S, max_batch: int = MAX_BATCH
    ) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.max_batch = max_batch
        keep_private(path)
        self._conn = sqlite3.connect(
            str(path),
            isolation_level=None,
            check_same_thread=False,
            timeout=timeout_s,
            cached_statements=512,
        )
        self._conn.row_factory = sqlite3.Row
        enter_wal_mode(self._conn, timeout_s)
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        # Each unit's SAVEPOINT keeps a journal of the pages it changes, to roll back to. Past
        # 64 KiB (an approval passes it) SQLite spills that journal to a temporary file: a
        # file made, written page by page and deleted in every batch. It only ever serves a
        # rollback inside the transaction, so memory loses nothing; durability is the WAL's.
        self._conn.execute("PRAGMA temp_store=MEMORY")
        self._tx = SqliteTx(self._conn)
        self._cond = threading.Condition()
        self._queue: deque[_Unit] = deque()
        self._closing = False
        #: Batches run (committed or failed) and units committed (for tests and reports).
        self.batches = 0
        self.units = 0
        self._writer = threading.Thread(target=self._write_forever, name="sqlite-writer")
        self._writer.daemon = True
        self._writer.start()

    # --- callers ---------------------------------------------------------------------------

    def run(self, work: Callable[[Tx], T]) -> T:
        if threading.current_thread() is self._writer:
            raise RuntimeError("Database.run inside a transaction would wait for itself")
        done = threading.Event()
        unit = self._submit(work, lambda: done.set())
        if not done.wait(self.timeout_s) and not self._withdraw(unit):
            done.wait()
        return unit.outcome()  # type: ignore[no-any-return]

    async def run_async(self, work: Callable[[Tx], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def deliver() -> None:
            # A closed loop (RuntimeError) has nobody waiting for this answer any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

        def time_out() -> None:
            if self._withdraw(unit):
                _resolve(future)

        unit = self._submit(work, deliver)
        timer = loop.call_later(self.timeout_s, time_out)
        try:
            await future
        finally:
            timer.cancel()
        return unit.outcome()  # type: ignore[no-any-return]

    def queued(self) -> int:
        """Units waiting for the writer (a gauge for tests and load reports)."""
        with self._cond:
            return len(self._queue)

    def _submit(self, work: Callable[[Tx], Any], deliver: Callable[[], None]) -> _Unit:
        unit = _Unit(work, deliver)
        with self._cond:
            if self._closing:
                raise DatabaseUnavailable("the payment database is closing; retry later")
            self._queue.append(unit)
            self._cond.notify()
        return unit

    def _withdraw(self, unit: _Unit) -> bool:
        """After ``timeout_s`` without a turn, withdraw ``unit`` (its caller is answered 503)
        and return True; a unit already taken into a batch runs on: False."""
        with self._cond:
            if unit.state != _Unit.QUEUED:
                return False
            unit.state = _Unit.CANCELLED
        unit.error = DatabaseUnavailable(
            f"the payment database is busy (no turn within {self.timeout_s:g} s); retry later"
        )
        return True

    # --- the writer thread -----------------------------------------------------------------

    def _write_forever(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch: list[_Unit] = []
                while self._queue and len(batch) < self.max_batch:
                    unit = self._queue.popleft()
                    if unit.state == _Unit.QUEUED:
                        unit.state = _Unit.TAKEN
                        batch.append(unit)
            if not batch:
                continue
            retry = self._run_batch(batch)
            again = {id(unit) for unit in retry}
            for unit in batch:
                if id(unit) not in again:
                    unit.deliver()
            if retry:
                with self._cond:
                    for unit in retry:
                        unit.state = _Unit.QUEUED
                    self._queue.extendleft(reversed(retry))

    def _run_batch(self, batch: list[_Unit]) -> list[_Unit]:
        """Run ``batch`` in one transaction, leaving every outcome on its unit; returns the
        units that lost a race (:class:`RetryableConflict`) and go again in the next batch."""
        retry: list[_Unit] = []
        self.batches += 1
        try:
            self._begin()
            for unit in batch:
                if not self._run_unit(unit):
                    retry.append(unit)
            self._conn.execute("COMMIT")
        except Exception as exc:
            self._rollback()
            error = _sqlite_translated(exc) if isinstance(exc, sqlite3.Error) else exc
            for unit in batch:
                unit.result, unit.error = None, copy.copy(error)
            return []
        self.units += len(batch) - len(retry)
        return retry

    def _run_unit(self, unit: _Unit) -> bool:
        """Run one unit in its own savepoint; False if it should be retried. A unit's own
        exception is kept for it, unless SQLite lost the whole transaction (I/O error, disk
        full): then the batch fails (raises) and every unit gets that error."""
        conn = self._conn
        conn.execute("SAVEPOINT unit")
        try:
            unit.result = unit.work(self._tx)
        except Exception as exc:
            if not conn.in_transaction:
                raise
            conn.execute("ROLLBACK TO unit")
            conn.execute("RELEASE unit")
            unit.attempts += 1
            if isinstance(exc, RetryableConflict) and unit.attempts < MAX_ATTEMPTS:
                log.debug("transaction lost a race; retry %d", unit.attempts)
                return False
            unit.error = _sqlite_translated(exc) if isinstance(exc, sqlite3.Error) else exc
            return True
        conn.execute("RELEASE unit")
        return True

    def _rollback(self) -> None:
        if not self._conn.in_transaction:
            return
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            # The next BEGIN rolls back first; until then nothing of this batch is answered.
            log.warning("ROLLBACK failed: %s", _sqlite_reason(exc))

    def _begin(self) -> None:
        """BEGIN IMMEDIATE, which waits up to the busy timeout for other processes' writes."""
        try:
            if self._conn.in_transaction:  # an earlier ROLLBACK failed
                self._conn.execute("ROLLBACK")
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if not _sqlite_unavailable(exc):
                raise
            raise DatabaseUnavailable(
                f"the payment database is unavailable ({_sqlite_reason(exc)}, waited "
                f"{self.timeout_s:g} s); nothing was saved, retry later"
            ) from None

    def close(self) -> None:
        """Finish every queued unit, then close the connection."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if threading.current_thread() is not self._writer:
            self._writer.join()
        self._conn.close()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _sqlite_translated(exc: sqlite3.Error) -> Exception:
    """``exc``, or :class:`DatabaseUnavailable` when it says the database is unusable."""
    if not _sqlite_unavailable(exc):
        return exc
    return DatabaseUnavailable(
        f"the payment database cannot be written ({_sqlite_reason(exc)}); "
        "nothing was saved, retry later"
    )


def _sqlite_unavailable(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _SQLITE_UNAVAILABLE


def _sqlite_reason(exc: sqlite3.Error) -> str:
    """The SQLite error text: fixed strings such as "database is locked", never values."""
    return str(exc) or getattr(exc, "sqlite_errorname", "unavailable")
