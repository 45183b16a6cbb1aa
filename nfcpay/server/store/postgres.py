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

import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self, TypeVar

import anyio.to_thread
import psycopg
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
#: Errors that mean the transaction lost a race and is run again.
_RETRYABLE = (
    RetryableConflict,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
)


class _StaleConnection(Exception):
    """A pooled connection turned out to be dead before anything committed: retry afresh."""


class PostgresTx(Tx):
    """A transaction on one pooled connection: psycopg speaks ``%s`` and pipelines.

    The connection is in autocommit mode and the transaction's ``BEGIN`` is sent here, in the
    same pipeline as the first statement: psycopg's own ``BEGIN`` would wait for its answer,
    a round trip of its own for every transaction. ``COMMIT`` and ``ROLLBACK`` are psycopg's
    (they go by the server's transaction status, which ``BEGIN`` set).
    """

    dialect = "postgresql"
    for_update = " FOR UPDATE"

    def __init__(self, conn: Any) -> None:
        super().__init__(conn)
        self._begun = False

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        if self._begun:
            return self._conn.execute(_pg_sql(sql), params)  # type: ignore[no-any-return]
        with self.pipeline():
            return self._conn.execute(_pg_sql(sql), params)  # type: ignore[no-any-return]

    def send(self, sql: str, params: Params = ()) -> Cursor:
        return self.execute(sql, params)

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        with self._conn.pipeline():
            if not self._begun:
                self._conn.execute("BEGIN")
                self._begun = True
            yield

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        with self.pipeline(), self._conn.cursor() as cur:
            cur.executemany(_pg_sql(sql), rows)


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    return sql.replace("?", "%s")


class _Connection(psycopg.Connection[DictRow]):
    """A connection as the pool opens it: stamped with when it connected (one older than a
    checkout waited idle in the pool, and may have died there), and telling ``failed`` why it
    could not connect (the pool itself only logs that)."""

    connected_at = 0.0

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


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(
        self, url: str, *, pool_size: int = 8, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
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
        return await anyio.to_thread.run_sync(self.run, work)

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


def _pg_reason(exc: Exception) -> str:
    """The first line of a connection error (host, port and cause; never a password)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
