"""How much a piece of work asks of the database, counted where the driver sees it.

:func:`counted` counts, for a :class:`~nfcpay.server.store.Database` in this process, the SQL
statements the database receives and (PostgreSQL) the round trips the work waits for:

* SQLite: every statement SQLite starts, from its own trace callback
  (``sqlite3.Connection.set_trace_callback``), so ``BEGIN``, ``SAVEPOINT``, ``RELEASE`` and
  ``COMMIT`` count, and ``executemany`` counts once per row. SQLite runs inside the process:
  there are no round trips (``round_trips`` stays None).
* PostgreSQL: libpq's own protocol trace (``PQtrace``) of every connection a transaction
  checks out of the pool. A statement is each answer that ends one (``CommandComplete``, or
  ``ErrorResponse`` for one that failed), so the statements of one message of several count
  one by one; a round trip is each time the client, having sent messages, reads the
  server's answer (a run of frontend messages followed by backend ones), whether the
  messages were one statement or a whole pipeline. A statement's first use on a connection
  also sends its ``PREPARE`` (:class:`~nfcpay.server.store.postgres.PostgresTx`): count
  work that ran once before, as a running server's has.

Both are deterministic for a given sequence of requests, unlike CPU or wall time. Counting
slows the work down (the PostgreSQL trace is written to a file and parsed per transaction):
count in a run of its own, never in one that is timed.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nfcpay.server.store import Database


@dataclass
class Traffic:
    """What reached the database driver while :func:`counted` watched."""

    statements: int = 0
    #: Waits for the database server's answer; None where the database runs in-process.
    round_trips: int | None = None

    def per(self, units: int) -> tuple[float, float | None]:
        """Statements and round trips per unit of work (``units`` approvals, say)."""
        trips = None if self.round_trips is None else self.round_trips / units
        return self.statements / units, trips


@contextlib.contextmanager
def counted(db: Database) -> Iterator[Traffic]:
    """Count what ``db`` sends inside the block (see the module's docstring)."""
    traffic = Traffic()
    if db.dialect == "sqlite":
        conn = db._conn  # type: ignore[attr-defined]  # the one connection the writer uses

        def seen(_sql: str) -> None:
            traffic.statements += 1

        conn.set_trace_callback(seen)
        try:
            yield traffic
        finally:
            conn.set_trace_callback(None)
        return
    traffic.round_trips = 0
    pool = db._pool  # type: ignore[attr-defined]
    getconn, putconn = pool.getconn, pool.putconn
    traces: dict[int, Any] = {}

    def traced_getconn(*args: Any, **kwargs: Any) -> Any:
        from psycopg import pq

        conn = getconn(*args, **kwargs)
        # Closed when the connection goes back to the pool (traced_putconn).
        trace = traces[id(conn)] = tempfile.TemporaryFile()  # noqa: SIM115
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        return conn

    def traced_putconn(conn: Any) -> None:
        trace = traces.pop(id(conn), None)
        if trace is not None:
            if not conn.closed:
                conn.pgconn.untrace()
            with trace:
                trace.seek(0)
                _tally(trace.read().decode(errors="replace"), traffic)
        putconn(conn)

    pool.getconn, pool.putconn = traced_getconn, traced_putconn
    try:
        yield traffic
    finally:
        pool.getconn, pool.putconn = getconn, putconn


def _tally(trace: str, traffic: Traffic) -> None:
    """Add the statements and round trips of one libpq trace to ``traffic``."""
    trips = 0
    sending = False
    for line in trace.splitlines():
        direction, _, rest = line.partition("\t")
        message = rest.split("\t", 2)[1] if rest.count("\t") >= 1 else ""
        if direction == "F":
            sending = True
            continue
        if message in {"CommandComplete", "ErrorResponse"}:
            traffic.statements += 1
        if direction == "B" and sending:
            sending = False
            trips += 1
    assert traffic.round_trips is not None
    traffic.round_trips += trips
