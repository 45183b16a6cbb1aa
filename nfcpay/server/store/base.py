"""The database interface the services use, the same on SQLite and PostgreSQL.

The services write plain SQL with ``?`` placeholders and call :meth:`Database.run`, which runs
a function inside ONE transaction and retries it when the database says the transaction lost
a race (PostgreSQL serialization failure or deadlock, SQLite busy, or
:class:`RetryableConflict`). What differs between the databases is confined to
:mod:`.sqlite`, :mod:`.postgres` and the DDL in :mod:`.migrations`.

When the database itself is the problem (SQLite file locked beyond the timeout, read-only,
full or failing; PostgreSQL unreachable or its connection killed) :meth:`Database.run` raises
:class:`~nfcpay.errors.DatabaseUnavailable` (HTTP 503) quickly, and only when the transaction
certainly did not commit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
Row = Mapping[str, Any]
Params = Sequence[Any]

#: How often one transaction is retried after losing a race before the error surfaces (500).
MAX_ATTEMPTS = 30
#: Default wait for a locked database or a new connection before answering 503.
DEFAULT_TIMEOUT_S = 5.0


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class RetryableConflict(Exception):
    """Raised inside a transaction to have :meth:`Database.run` roll back and run it again."""


class Tx:
    """One open transaction on a DB-API connection whose placeholder is ``?`` (SQLite's).

    ``dialect`` names the database; ``for_update`` is its row-lock clause (empty where a
    transaction holds the whole database). A database whose driver differs overrides
    :meth:`execute`, :meth:`executemany` and :meth:`pipeline`.
    """

    dialect: str = ""
    for_update: str = ""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        return self._conn.execute(sql, params)  # type: ignore[no-any-return]

    def send(self, sql: str, params: Params = ()) -> Cursor:
        """Run a statement whose answer is read later: inside :meth:`pipeline` on PostgreSQL,
        once the pipeline has its answers. SQLite runs it to its end at once: a statement left
        open would hold its read snapshot, and once another connection has written, SQLite
        refuses this connection every write transaction while it is open."""
        return _Answered(self.execute(sql, params))

    def one(self, sql: str, params: Params = ()) -> Row | None:
        return self.execute(sql, params).fetchone()  # type: ignore[no-any-return]

    def all(self, sql: str, params: Params = ()) -> list[Row]:
        return self.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Params = ()) -> Any:
        row = self.execute(sql, params).fetchone()
        return None if row is None else row[next(iter(row.keys()))]

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        """Send the statements inside without waiting for each answer (PostgreSQL: all of
        them in one message when the block ends, or when an answer is read first); errors and
        ``rowcount`` arrive then. A no-op on SQLite."""
        yield

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        self._conn.executemany(sql, rows)

    def insert(self, into: str, rows: Sequence[Params]) -> None:
        """``INSERT INTO {into} VALUES (…), (…)``: every row in ONE statement (``executemany``
        sends one per row). ``into`` names the table and its columns."""
        marks = f"({', '.join('?' * len(rows[0]))})"
        self.execute(
            f"INSERT INTO {into} VALUES {', '.join([marks] * len(rows))}",
            [value for row in rows for value in row],
        )


class _Answered:
    """A cursor's whole answer, read at once (:meth:`Tx.send`)."""

    def __init__(self, cursor: Cursor) -> None:
        self.rowcount = cursor.rowcount
        self._rows = cursor.fetchall()

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return self._rows


class Database(ABC):
    """A dialect name, :meth:`run` (and :meth:`run_async`) with retries, and :meth:`close`."""

    dialect: str
    timeout_s: float = DEFAULT_TIMEOUT_S

    @abstractmethod
    def run(self, work: Callable[[Tx], T]) -> T:
        """Run ``work(tx)`` in one transaction, retrying it if it lost a race; commit its result.

        Any exception from ``work`` rolls the whole transaction back and propagates.
        Raises :class:`~nfcpay.errors.DatabaseUnavailable` when the database cannot be used.
        """

    @abstractmethod
    async def run_async(self, work: Callable[[Tx], T]) -> T:
        """:meth:`run` for the event loop: the blocking work happens off the loop."""

    @abstractmethod
    def close(self) -> None:
        """Release the database; afterwards :meth:`run` answers
        :class:`~nfcpay.errors.DatabaseUnavailable`."""
