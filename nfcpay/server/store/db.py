"""Database access for the payment server: one small interface over SQLite and PostgreSQL.

The services write plain SQL with ``?`` placeholders and call :meth:`Database.run`, which runs
a function inside ONE transaction and retries it when the database says the transaction lost
a race (PostgreSQL serialization failure or deadlock, SQLite busy). The differences between
the two databases are confined to this module and the DDL in :mod:`.migrations`:

* SQLite: one connection in WAL mode with ``synchronous=FULL`` (durable commits); writers are
  serialized by a process-local lock and ``BEGIN IMMEDIATE`` (which also serializes against
  other processes, with a busy timeout). No row locks are needed.
* PostgreSQL (psycopg 3): a small pool of connections at READ COMMITTED; services lock the
  rows they will change with ``SELECT … FOR UPDATE`` (:attr:`Tx.for_update`) in sorted id
  order, so concurrent authorizations queue on the rows instead of overspending them.

When the database itself is the problem (SQLite file locked beyond the timeout, read-only,
full or failing; PostgreSQL unreachable or its connection killed) :meth:`Database.run` raises
:class:`~nfcpay.errors.DatabaseUnavailable` (HTTP 503) quickly, and only when the transaction
certainly did not commit. Broken PostgreSQL connections are dropped from the pool and the
transaction is retried once on a fresh one, so the server recovers by itself when the
database returns. A failure *during* COMMIT has an unknown outcome and is not translated.
"""

from __future__ import annotations

import functools
import logging
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

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

    @contextmanager
    def _transaction(self) -> Iterator[Tx]:
        raise NotImplementedError
        yield  # pragma: no cover

    def close(self) -> None:
        raise NotImplementedError


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: Path, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=timeout_s
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self) -> Iterator[Tx]:
        # Requests queue on the process lock as well as on the file lock: both waits are
        # bounded so a locked file answers 503 quickly instead of piling up requests.
        if not self._lock.acquire(timeout=self.timeout_s):
            raise DatabaseUnavailable(
                f"the payment database is busy (no turn within {self.timeout_s:g} s); retry later"
            )
        try:
            self._begin()
            try:
                yield Tx(self._conn, self.dialect)
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error) and _sqlite_unavailable(exc):
                    raise DatabaseUnavailable(
                        f"the payment database cannot be written ({_sqlite_reason(exc)}); "
                        "nothing was saved, retry later"
                    ) from None
                raise
        finally:
            self._lock.release()

    def _begin(self) -> None:
        """BEGIN IMMEDIATE, which waits up to the busy timeout for other processes' writes."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if not _sqlite_unavailable(exc):
                raise
            raise DatabaseUnavailable(
                f"the payment database is unavailable ({_sqlite_reason(exc)}, waited "
                f"{self.timeout_s:g} s); nothing was saved, retry later"
            ) from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()


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
