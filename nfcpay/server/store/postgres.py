"""PostgreSQL (psycopg 3): a :class:`psycopg_pool.ConnectionPool` at READ COMMITTED.

Services lock the rows they will change with ``SELECT … FOR UPDATE`` (:attr:`Tx.for_update`)
in sorted id order, so concurrent authorizations queue on the rows instead of overspending
them; a transaction that lost a race (serialization failure, deadlock,
:class:`~.base.RetryableConflict`) is run again.

The pool keeps one connection open from the start and grows to ``pool_size`` on demand; a
caller waits at most ``timeout_s`` for one. (psycopg_pool's defaults close connections above
the first after 10 idle minutes and renew each after an hour, when it is returned.) A
connection is not checked before it is handed out (no extra round trip per transaction): a
connection that died while idle in the pool is found by the transaction's first statement,
before anything could commit. Then the idle connections are assumed dead with it (server
restart, pg_terminate_backend of all sessions) and drained, and the transaction is retried
on a fresh connection, so the server recovers by itself when the database returns. A
connection made for this very transaction that breaks, or no connection within
``timeout_s``, raises :class:`~nfcpay.errors.DatabaseUnavailable` (HTTP 503); while
PostgreSQL cannot be reached that comes as soon as the pool has failed to connect, not after
``timeout_s``. A connection lost *during* COMMIT (the database died or failed over) leaves
the outcome unknown: the transaction may have committed. It is not run again; the caller gets
:class:`~nfcpay.errors.DatabaseOutcomeUnknown` (HTTP 503), which a request with an
idempotency key may repeat to learn the outcome.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Self, TypeVar

import psycopg
from psycopg import pq
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from nfcpay.errors import ConfigError, DatabaseOutcomeUnknown, DatabaseUnavailable
from nfcpay.server.store.base import (
    DEFAULT_TIMEOUT_S,
    MAX_ATTEMPTS,
    Cursor,
    Database,
    Params,
    RetryableConflict,
    Tx,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: While PostgreSQL is unreachable, how often a caller waiting for a connection looks whether
#: the pool gave up connecting (it would otherwise wait out its whole timeout).
_DOWN_POLL_S = 0.05
#: At most this many statements are prepared on one connection (a statement's text varies
#: with how many grants it names, so there are more than the services' few dozen).
MAX_PREPARED = 256
#: What PREPARE takes (EXPLAIN, say, it does not).
_PREPARABLE = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH|VALUES)\b", re.IGNORECASE)
#: Errors that mean the transaction lost a race and is run again.
_RETRYABLE = (
    RetryableConflict,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
)


class _StaleConnection(Exception):
    """A pooled connection turned out to be dead before anything committed: retry afresh."""


class PostgresTx(Tx):
    """A transaction on one pooled connection, its statements sent as few messages.

    Every statement with parameters runs as ``EXECUTE`` of a statement prepared on the
    connection (:meth:`_Connection.prepared_name`), its parameters written in as literals by
    psycopg's client-side binding (:class:`~psycopg.ClientCursor`, libpq's quoting rules).
    That lets the statements of a :meth:`pipeline` block go to PostgreSQL as ONE message of
    several statements, sent when the block ends or when an answer inside it is read first:
    one round trip and one wait in the driver for all of them. psycopg's own pipeline mode
    makes a poll and a pass of its state machine per statement, and measured as about a
    third of an approval's CPU here. PostgreSQL still parses and plans each statement once
    per connection, not once per use.

    The connection is in autocommit mode and the transaction's ``BEGIN`` rides with the
    first statement: psycopg's own ``BEGIN`` would wait for its answer, a round trip of its
    own for every transaction. ``COMMIT`` and ``ROLLBACK`` are psycopg's (they go by the
    server's transaction status, which ``BEGIN`` set).
    """

    dialect = "postgresql"
    for_update = " FOR UPDATE"

    def __init__(self, conn: _Connection) -> None:
        super().__init__(conn)
        self._conn: _Connection = conn
        self._begun = False
        #: Statements sent inside :meth:`pipeline` and not yet flushed (None: outside one).
        self._queued: list[tuple[str, Params, _Queued]] | None = None

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        if self._queued is None:
            with self.pipeline():
                return self.execute(sql, params)
        answer = _Queued(self)
        self._queued.append((sql, params, answer))
        return answer

    def send(self, sql: str, params: Params = ()) -> Cursor:
        return self.execute(sql, params)

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        if self._queued is not None:  # already inside one: the outer block sends
            yield
            return
        self._queued = []
        try:
            yield
            self.flush()
        finally:
            self._queued = None

    def flush(self) -> None:
        """Send the statements queued so far (and ``BEGIN`` first, if it was not sent yet) as
        one message, and give each its answer. The first error raises: PostgreSQL skips the
        statements after it, and the transaction can only be rolled back."""
        statements: list[tuple[str, Params, _Queued | None]] = []
        if not self._begun:
            statements.append(("BEGIN", (), None))
        statements += self._queued or []
        if not statements:
            return
        if self._queued:
            self._queued = []
        with psycopg.ClientCursor(self._conn) as cur:
            cur.execute(";\n".join(self._bound(cur, sql, params) for sql, params, _ in statements))
            self._begun = True
            for index, (_, _, answer) in enumerate(statements):
                if index:
                    cur.nextset()
                if answer is not None:
                    # Not cur.description: it builds an object per column of every answer.
                    rows = cur.fetchall() if _has_rows(cur.pgresult) else []
                    answer.answered(cur.rowcount, rows)

    def _bound(self, cur: psycopg.ClientCursor[DictRow], sql: str, params: Params) -> str:
        """``sql`` with ``params`` as literals: ``EXECUTE`` of its prepared statement."""
        name = None
        if params and _PREPARABLE.match(sql):
            name = self._conn.prepared_name(sql, tuple(_pg_type(value) for value in params))
        if name is None:
            return cur.mogrify(_pg_sql(sql), params)
        return cur.mogrify(f"EXECUTE {name}({', '.join(['%s'] * len(params))})", params)

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        with self.pipeline():
            for row in rows:
                self.execute(sql, row)


class _Queued:
    """The answer to a statement queued in :meth:`PostgresTx.pipeline`: reading it before
    the block ends sends the queue so far."""

    def __init__(self, tx: PostgresTx) -> None:
        self._tx = tx
        self._rows: list[Any] | None = None
        self._rowcount = -1

    def answered(self, rowcount: int, rows: list[Any]) -> None:
        self._rowcount, self._rows = rowcount, rows

    @property
    def rowcount(self) -> int:
        self._answer()
        return self._rowcount

    def fetchone(self) -> Any:
        rows = self._answer()
        return rows[0] if rows else None

    def fetchall(self) -> list[Any]:
        return self._answer()

    def _answer(self) -> list[Any]:
        if self._rows is None:
            self._tx.flush()
        assert self._rows is not None
        return self._rows


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """``sql`` (``?`` marks, as every dialect's statements are written) as psycopg's binding
    reads it: ``%s`` marks, and a ``%`` of the SQL itself (a modulo) doubled."""
    return sql.replace("%", "%%").replace("?", "%s")


def _has_rows(result: Any) -> bool:
    """Whether a statement's answer is rows (a SELECT's, or one with RETURNING)."""
    return result is not None and result.status == pq.ExecStatus.TUPLES_OK


def _pg_type(value: Any) -> str:
    """The type a parameter is prepared with, as psycopg's own binding would send it: a
    string (or NULL) is ``unknown``, so PostgreSQL takes the type its place in the statement
    asks for; numbers, bytes and booleans are typed, so a statement that gives them no
    such place (``SELECT ? AS n``) still answers a number."""
    if value is None or isinstance(value, str):
        return "unknown"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double precision"
    if isinstance(value, bytes | bytearray | memoryview):
        return "bytea"
    return "unknown"


def _numbered(sql: str) -> str:
    """``sql`` with its ``?`` marks as ``$1``, ``$2``, … (a PREPARE's parameters)."""
    parts = sql.split("?")
    return "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], 1)) + parts[-1]


class _Connection(psycopg.Connection[DictRow]):
    """A connection as the pool opens it: stamped with when it connected (one older than a
    checkout waited idle in the pool, and may have died there), and telling ``failed`` why it
    could not connect (the pool itself only logs that)."""

    connected_at = 0.0
    #: Statements prepared on this connection: (SQL with ``?`` marks, parameter types) → name.
    _nfcpay_prepared: dict[tuple[str, tuple[str, ...]], str] | None = None

    def prepared_name(self, sql: str, types: tuple[str, ...]) -> str | None:
        """The name of the statement prepared on this connection for ``sql`` with parameters
        of ``types`` (:func:`_pg_type`), prepared now if it was not yet (one round trip, once
        per statement and connection); None once :data:`MAX_PREPARED` statements are.

        A prepared statement outlives the transaction it was made in, even one rolled back,
        and dies with its connection."""
        if self._nfcpay_prepared is None:
            self._nfcpay_prepared = {}
        key = (sql, types)
        name = self._nfcpay_prepared.get(key)
        if name is None and len(self._nfcpay_prepared) < MAX_PREPARED:
            name = f"nfcpay_{len(self._nfcpay_prepared)}"
            self.execute(f"PREPARE {name} ({', '.join(types)}) AS {_numbered(sql)}")
            self._nfcpay_prepared[key] = name
        return name

    @classmethod
    def connect(  # type: ignore[override]
        cls, conninfo: str = "", *, failed: Callable[[Exception], None], **kwargs: Any
    ) -> Self:
        try:
            conn = super().connect(conninfo, **kwargs)
        except psycopg.OperationalError as exc:
            failed(exc)
            raise
        conn.connected_at = time.monotonic()
        return conn


#: The most connections (and threads) one server process opens by default.
MAX_DEFAULT_POOL_SIZE = 8


def default_pool_size() -> int:
    """Twice this machine's CPUs, at most :data:`MAX_DEFAULT_POOL_SIZE`.

    More transactions at once than the cores can run only take turns: on 2 cores, with
    PostgreSQL on the same machine, 4 connections against 8 halved the open loop's median
    (5.3 to 6.8 ms against 11 to 13.5 ms at 80 % load, four alternating runs of
    ``bench_server.py --concurrency 32 --duration 8 --rate-share 0.8 --db …``) and its p99
    (23 to 45 ms against 66 to 140 ms) at the same throughput. A database on another
    machine, further away, may want more: ``NFCPAY_SERVER_DB_POOL_SIZE``.
    """
    return min(MAX_DEFAULT_POOL_SIZE, 2 * (os.cpu_count() or 1))


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(
        self, url: str, *, pool_size: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        if pool_size is None:
            pool_size = default_pool_size()
        self.timeout_s = timeout_s
        #: Why the latest connection attempt failed; None once one succeeds.
        self._unreachable: str | None = None
        #: Connection attempts the pool gave up (each after two tries, see reconnect_timeout).
        self._gave_up = 0
        #: Set when a connection is made or the pool gives up making one (for start-up).
        self._settled = threading.Event()
        connect_timeout = max(1, round(timeout_s))
        self._pool = ConnectionPool(
            url,
            connection_class=_Connection,
            kwargs={
                "autocommit": True,  # PostgresTx sends BEGIN with its first statement
                # PostgresTx prepares its statements itself. psycopg's own preparing would also
                # send DEALLOCATE ALL after any ROLLBACK, dropping PostgresTx's statements too.
                "prepare_threshold": None,
                "row_factory": dict_row,
                "connect_timeout": connect_timeout,
                "failed": self._connect_failed,
            },
            min_size=1,
            max_size=pool_size,
            timeout=timeout_s,
            # No reconnection loop in the background: a failed connect is tried once more at
            # once, then given up, and the next caller that needs a connection tries again.
            reconnect_timeout=0,
            configure=self._connected,
            reconnect_failed=self._given_up,
            name="nfcpay-postgres",
            open=False,
        )
        self._pool.open()
        #: The threads :meth:`run_async` runs transactions on: one per pooled connection.
        self._threads = ThreadPoolExecutor(pool_size, thread_name_prefix="nfcpay-postgres")
        # The first connection, before serving: two tries, each within connect_timeout.
        wait_s = 2 * connect_timeout + 1
        if not self._settled.wait(wait_s) or self._unreachable is not None:
            self._pool.close()
            reason = self._unreachable or f"no connection within {wait_s} s"
            raise ConfigError(f"cannot connect to PostgreSQL: {reason}")

    def _connected(self, conn: _Connection) -> None:
        self._unreachable = None
        self._settled.set()

    def _connect_failed(self, exc: Exception) -> None:
        self._unreachable = _pg_reason(exc)

    def _given_up(self, pool: ConnectionPool[_Connection]) -> None:
        self._gave_up += 1
        self._settled.set()

    # --- transactions ----------------------------------------------------------------------

    def run(self, work: Callable[[Tx], T]) -> T:
        lost = False
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with self._transaction(suspect=lost) as tx:
                    return work(tx)
            except _StaleConnection:
                if attempt == MAX_ATTEMPTS:
                    raise DatabaseUnavailable(
                        "the payment database connection keeps failing; retry later"
                    ) from None
                log.warning("database connection was lost; retrying on a new one")
                lost = True
                continue
            except Exception as exc:
                if attempt == MAX_ATTEMPTS or not isinstance(exc, _RETRYABLE):
                    raise
                log.debug("transaction lost a race (%s); retry %d", type(exc).__name__, attempt)
                time.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.1)))
        raise AssertionError("unreachable")

    async def run_async(self, work: Callable[[Tx], T]) -> T:
        """:meth:`run` on one of ``pool_size`` threads of this database's own, so a request
        waits for a thread and a connection together, on the event loop. anyio's shared
        thread pool (40 threads, each request in one, most of them then waiting for one of
        the pool's connections) cost a fifth more CPU per approval here, measured: the hand-
        offs between threads, not the work."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self.run, work)

    @contextmanager
    def _transaction(self, *, suspect: bool = False) -> Iterator[Tx]:
        asked_at = time.monotonic()
        conn = self._checkout(suspect=suspect)
        reused = conn.connected_at < asked_at
        try:
            try:
                yield PostgresTx(conn)
            except BaseException as exc:
                if not (conn.closed or conn.broken):
                    conn.rollback()
                elif isinstance(exc, psycopg.Error):
                    # The connection died before COMMIT, so the server rolled it back.
                    self._pool.drain()
                    if reused:
                        raise _StaleConnection from None
                    raise DatabaseUnavailable(
                        "the payment database connection was lost; nothing was saved, retry later"
                    ) from None
                raise
            self._commit(conn)
        finally:
            # A closed or broken connection is dropped and replaced by the pool.
            self._pool.putconn(conn)

    def _commit(self, conn: _Connection) -> None:
        try:
            conn.commit()
        except psycopg.OperationalError as exc:
            if not (conn.closed or conn.broken):
                raise
            self._pool.drain()
            log.warning(
                "the database connection was lost during COMMIT, so whether the transaction "
                "was saved is unknown (PostgreSQL: %s)",
                _pg_reason(exc),
            )
            raise DatabaseOutcomeUnknown(
                "the connection to the payment database was lost while this request was being "
                "saved, so whether it took effect is unknown: send a payment or refund again "
                "with the same Idempotency-Key to get its real answer, and check anything else "
                "before repeating it"
            ) from None

    def _checkout(self, *, suspect: bool = False) -> _Connection:
        """A connection within ``timeout_s``. The pool does not wake its waiters when it fails
        to connect, so while PostgreSQL may be unreachable (the last attempt failed, or a
        connection was just lost: ``suspect``) the wait is taken in short slices and ends as
        soon as the pool has given up another attempt: 503 at once, as without a pool."""
        deadline = time.monotonic() + self.timeout_s
        gave_up, down = self._gave_up, suspect or self._unreachable is not None
        while True:
            wait = deadline - time.monotonic()
            try:
                return self._pool.getconn(min(wait, _DOWN_POLL_S) if down else wait)
            except PoolTimeout:
                if time.monotonic() < deadline and self._gave_up == gave_up:
                    continue
            except PoolClosed:
                raise DatabaseUnavailable("the payment database is closing; retry later") from None
            reason = self._unreachable or (
                f"no connection within {self.timeout_s:g} s" if suspect else None
            )
            if reason is not None:
                raise DatabaseUnavailable(
                    f"cannot reach the payment database (PostgreSQL: {reason}); retry later"
                ) from None
            raise DatabaseUnavailable(
                f"all payment database connections are busy (waited {self.timeout_s:g} s)"
            ) from None

    def close(self) -> None:
        """Close the idle connections now and each busy one when its transaction ends."""
        self._pool.close()
        self._threads.shutdown(wait=False)


def _pg_reason(exc: Exception) -> str:
    """The first line of a connection error (host, port and cause; never a password)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
