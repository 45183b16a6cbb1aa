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

from nfcpay.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")
Row = Mapping[str, Any]
Params = Sequence[Any]

#: How often one transaction is retried after losing a race before the error surfaces (500).
MAX_ATTEMPTS = 30


class _Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class RetryableConflict(Exception):
    """Raised inside a transaction to have :meth:`Database.run` roll back and run it again."""


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

    def run(self, work: Callable[[Tx], T]) -> T:
        """Run ``work(tx)`` in one transaction, retrying it if it lost a race; commit its result.

        Any exception from ``work`` rolls the whole transaction back and propagates.
        """
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with self._transaction() as tx:
                    return work(tx)
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

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = path
        self._conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self) -> Iterator[Tx]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._conn, self.dialect)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _is_retryable(self, exc: Exception) -> bool:
        return super()._is_retryable(exc) or (
            isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
        )

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError as exc:
            raise ConfigError("PostgreSQL needs psycopg 3: pip install 'nfcpay[postgres]'") from exc
        self._psycopg = psycopg
        self._url = url
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._all: list[Any] = []
        self._connect = functools.partial(psycopg.connect, url, row_factory=dict_row)
        self._free = threading.Semaphore(pool_size)
        try:
            self._pool.put(self._new_connection())
        except psycopg.OperationalError as exc:
            raise ConfigError(f"cannot connect to PostgreSQL: {exc}") from None

    def _new_connection(self) -> Any:
        conn = self._connect()
        self._all.append(conn)
        return conn

    @contextmanager
    def _checkout(self) -> Iterator[Any]:
        with self._free:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                conn = self._new_connection()
            if conn.closed:
                self._all.remove(conn)
                conn = self._new_connection()
            try:
                yield conn
            finally:
                self._pool.put(conn)

    @contextmanager
    def _transaction(self) -> Iterator[Tx]:
        with self._checkout() as conn:
            try:
                yield Tx(conn, self.dialect)
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise
            conn.commit()

    def _is_retryable(self, exc: Exception) -> bool:
        errors = self._psycopg.errors
        return super()._is_retryable(exc) or isinstance(
            exc, errors.SerializationFailure | errors.DeadlockDetected
        )

    def close(self) -> None:
        for conn in self._all:
            conn.close()


def open_database(url: str) -> Database:
    """Open ``sqlite:///path`` or ``postgresql://…``."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url)
    if url.startswith("sqlite:///"):
        return SqliteDatabase(Path(url.removeprefix("sqlite:///")))
    raise ConfigError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://…")
