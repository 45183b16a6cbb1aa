"""Database access for the payment server: one small interface over SQLite and PostgreSQL.

The services write plain SQL with ``?`` placeholders and call :meth:`Database.run`, which runs
a function inside ONE transaction and retries it when the database says the transaction lost
a race (PostgreSQL serialization failure or deadlock, SQLite busy). The differences between
the two databases are confined to this module and the DDL in :mod:`.migrations`:

* SQLite: one connection in WAL mode with ``synchronous=FULL`` (durable commits), owned by
  ONE writer thread that does *group commit*: every :meth:`Database.run` call is queued, and
  the writer runs whatever is queued (a batch) inside one ``BEGIN IMMEDIATE`` transaction
  (which also serializes against other processes, with a busy timeout), each unit of work in
  its own ``SAVEPOINT``. A unit that raises rolls back only its savepoint and gets its
  exception; the batch then COMMITs once (one fsync for many approvals) and only after that
  COMMIT succeeded does any unit learn its outcome, so nothing is answered before it is on
  disk. A failed COMMIT fails every unit of the batch. No row locks are needed.
* PostgreSQL (psycopg 3): a small pool of connections at READ COMMITTED; services lock the
  rows they will change with ``SELECT … FOR UPDATE`` (:attr:`Tx.for_update`) in sorted id
  order, so concurrent authorizations queue on the rows instead of overspending them.

When the database itself is the problem (SQLite file locked beyond the timeout, read-only,
full or failing; PostgreSQL unreachable or its connection killed) :meth:`Database.run` raises
:class:`~nfcpay.errors.DatabaseUnavailable` (HTTP 503) quickly, and only when the transaction
certainly did not commit. Broken PostgreSQL connections are dropped from the pool and the
transaction is retried once on a fresh one, so the server recovers by itself when the
database returns. A failure *during* a PostgreSQL COMMIT has an unknown outcome and is not
translated (a failed SQLite COMMIT certainly rolled back, and is).

Async callers (the HTTP handlers) use :meth:`Database.run_async`: on SQLite it queues the
unit for the writer and awaits its outcome on the event loop, with no thread-pool hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import queue
import random
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio.to_thread

from nfcpay.errors import ConfigError, DatabaseUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
Row = Mapping[str, Any]
Params = Sequence[Any]

#: How often one transaction is retried after losing a race before the error surfaces (500).
MAX_ATTEMPTS = 30
#: Default wait for a locked database or a new connection before answering 503.
DEFAULT_TIMEOUT_S = 5.0
#: SQLite primary result codes that mean "the database is unusable right now", not a bug:
#: BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
_SQLITE_UNAVAILABLE = frozenset({5, 6, 8, 10, 13, 14, 15})
#: At most this many units share one SQLite transaction (one COMMIT, one fsync).
MAX_BATCH = 128


class _Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class RetryableConflict(Exception):
    """Raised inside a transaction to have :meth:`Database.run` roll back and run it again."""


class _StaleConnection(Exception):
    """A pooled connection turned out to be dead before anything committed: retry afresh."""


class Tx:
    """One open transaction. ``for_update`` is the row-lock clause of this database."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self._conn = conn
        self.dialect = dialect
        self.for_update = " FOR UPDATE" if dialect == "postgresql" else ""

    def execute(self, sql: str, params: Params = ()) -> _Cursor:
        if self.dialect == "postgresql":
            sql = _pg_sql(sql)
        return self._conn.execute(sql, params)  # type: ignore[no-any-return]

    def one(self, sql: str, params: Params = ()) -> Row | None:
        return self.execute(sql, params).fetchone()  # type: ignore[no-any-return]

    def all(self, sql: str, params: Params = ()) -> list[Row]:
        return self.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Params = ()) -> Any:
        row = self.execute(sql, params).fetchone()
        return None if row is None else row[next(iter(row.keys()))]

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        """Send the statements inside without waiting for each answer (PostgreSQL pipeline
        mode); errors and ``rowcount`` arrive when the block ends. A no-op on SQLite."""
        if self.dialect == "postgresql":
            with self._conn.pipeline():
                yield
        else:
            yield

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        if self.dialect == "postgresql":
            with self._conn.cursor() as cur:
                cur.executemany(_pg_sql(sql), rows)
        else:
            self._conn.executemany(sql, rows)


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    return sql.replace("?", "%s")


class Database:
    """Base class: a dialect name, :meth:`run` with retries, and :meth:`close`."""

    dialect: str
    timeout_s: float = DEFAULT_TIMEOUT_S

    def run(self, work: Callable[[Tx], T]) -> T:
        """Run ``work(tx)`` in one transaction, retrying it if it lost a race; commit its result.

        Any exception from ``work`` rolls the whole transaction back and propagates.
        Raises :class:`DatabaseUnavailable` when the database cannot be used.
        """
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with self._transaction() as tx:
                    return work(tx)
            except _StaleConnection:
                if attempt == MAX_ATTEMPTS:
                    raise DatabaseUnavailable(
                        "the payment database connection keeps failing; retry later"
                    ) from None
                log.warning("database connection was lost; retrying on a new one")
                continue
            except Exception as exc:
                if attempt == MAX_ATTEMPTS or not self._is_retryable(exc):
                    raise
                log.debug("transaction lost a race (%s); retry %d", type(exc).__name__, attempt)
                time.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.1)))
        raise AssertionError("unreachable")

    def _is_retryable(self, exc: Exception) -> bool:
        return isinstance(exc, RetryableConflict)

    async def run_async(self, work: Callable[[Tx], T]) -> T:
        """:meth:`run` for the event loop: the blocking work happens off the loop."""
        return await anyio.to_thread.run_sync(self.run, work)

    @contextmanager
    def _transaction(self) -> Iterator[Tx]:
        raise NotImplementedError
        yield  # pragma: no cover

    def close(self) -> None:
        raise NotImplementedError


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


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(
        self, path: Path, *, timeout_s: float = DEFAULT_TIMEOUT_S, max_batch: int = MAX_BATCH
    ) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.max_batch = max_batch
        self._conn = sqlite3.connect(
            str(path),
            isolation_level=None,
            check_same_thread=False,
            timeout=timeout_s,
            cached_statements=512,
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._tx = Tx(self._conn, self.dialect)
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


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(
        self, url: str, *, pool_size: int = 8, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError as exc:
            raise ConfigError("PostgreSQL needs psycopg 3: pip install 'nfcpay[postgres]'") from exc
        self._psycopg = psycopg
        self._url = url
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._all: list[Any] = []
        self.timeout_s = timeout_s
        self._connect = functools.partial(
            psycopg.connect,
            url,
            row_factory=dict_row,
            connect_timeout=max(1, round(timeout_s)),
        )
        self._free = threading.Semaphore(pool_size)
        self._all_lock = threading.Lock()
        try:
            self._pool.put(self._connect_tracked())
        except psycopg.OperationalError as exc:
            raise ConfigError(f"cannot connect to PostgreSQL: {_pg_reason(exc)}") from None

    def _connect_tracked(self) -> Any:
        conn = self._connect()
        with self._all_lock:
            self._all.append(conn)
        return conn

    def _new_connection(self) -> Any:
        try:
            return self._connect_tracked()
        except self._psycopg.OperationalError as exc:
            raise DatabaseUnavailable(
                f"cannot reach the payment database (PostgreSQL: {_pg_reason(exc)}); retry later"
            ) from None

    def _discard(self, conn: Any) -> None:
        with self._all_lock:
            if conn in self._all:
                self._all.remove(conn)
        conn.close()

    def _discard_idle(self) -> None:
        """After one dead connection, assume the idle ones died with it (server restart,
        pg_terminate_backend of all sessions): drop them rather than fail on each in turn."""
        while True:
            try:
                self._discard(self._pool.get_nowait())
            except queue.Empty:
                return

    @contextmanager
    def _checkout(self) -> Iterator[tuple[Any, bool]]:
        """A connection and whether it came from the pool (a reused one may be stale)."""
        if not self._free.acquire(timeout=self.timeout_s):
            raise DatabaseUnavailable(
                f"all payment database connections are busy (waited {self.timeout_s:g} s)"
            )
        try:
            try:
                conn, reused = self._pool.get_nowait(), True
            except queue.Empty:
                conn, reused = self._new_connection(), False
            if conn.closed:
                self._discard(conn)
                conn, reused = self._new_connection(), False
            try:
                yield conn, reused
            finally:
                if conn.closed or conn.broken:
                    self._discard(conn)
                else:
                    self._pool.put(conn)
        finally:
            self._free.release()

    @contextmanager
    def _transaction(self) -> Iterator[Tx]:
        with self._checkout() as (conn, reused):
            try:
                yield Tx(conn, self.dialect)
            except BaseException as exc:
                if not (conn.closed or conn.broken):
                    conn.rollback()
                elif isinstance(exc, self._psycopg.Error):
                    # The connection died before COMMIT, so the server rolled it back.
                    self._discard_idle()
                    if reused:
                        raise _StaleConnection from None
                    raise DatabaseUnavailable(
                        "the payment database connection was lost; nothing was saved, retry later"
                    ) from None
                raise
            conn.commit()

    def _is_retryable(self, exc: Exception) -> bool:
        errors = self._psycopg.errors
        return super()._is_retryable(exc) or isinstance(
            exc, errors.SerializationFailure | errors.DeadlockDetected
        )

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()


def _pg_reason(exc: Exception) -> str:
    """The first line of a connection error (host, port and cause; never a password)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def open_database(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Database:
    """Open ``sqlite:///path`` or ``postgresql://…``; ``timeout_s`` bounds lock and connect
    waits before :class:`DatabaseUnavailable`."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url, timeout_s=timeout_s)
    if url.startswith("sqlite:///"):
        return SqliteDatabase(Path(url.removeprefix("sqlite:///")), timeout_s=timeout_s)
    raise ConfigError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://…")
