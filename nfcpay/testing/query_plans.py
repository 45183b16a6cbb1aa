"""What the hot-path query-plan check and ``scripts/bench_scale.py`` share: bulk data, the
hot paths driven through the real app, and the plan of every statement they send.

Real requests — approvals (one paying a bill, one the target asks about), declines (wrong
usage-auth, terminal not allowed, expired grant), a refund, a grant issue and notification
reads — run through the real app. Every SQL statement the server sends is OBSERVED at the
driver (SQLite's trace callback, which reports each statement with its bound values; on
PostgreSQL each statement with its parameters as ``PostgresTx`` binds it), so whatever SQL the
services run today or after a rewrite is what gets checked. Each captured statement is then
EXPLAINed with its real parameters (PostgreSQL after ANALYZE).

:func:`populate` fills a database by bulk SQL (a recursive CTE on SQLite, ``generate_series``
on PostgreSQL) with rows that satisfy every constraint and the ledger audit.
"""

from __future__ import annotations

import contextlib
import functools
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from nfcpay import crypto
from nfcpay.server.store import Database, Tx
from nfcpay.testing.server import InProcessServer, PaymentScene, payment_scene

#: Rows per traffic table in the test: enough that PostgreSQL's planner prefers indexes.
TEST_ROWS = 50_000
#: Tables that do not grow in service; a scan of anything else fails the test.
STATIC_TABLES = frozenset({"schema_version"})
#: The server prunes seen nonces at most once a minute; the captured run moves its clock past that.
_PRUNE_DUE_S = 61.0
_CURRENCY = "KRW"


# --- bulk data ---------------------------------------------------------------------------------

_SERIES = {
    "sqlite": (
        "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < {n}) ",
        "seq",
    ),
    "postgresql": ("", "generate_series(0::bigint, {n} - 1) AS seq(i)"),
}


def _blob(dialect: str, size: int, salt: str) -> str:
    """An SQL expression for ``size`` (16 or 32) distinct-looking bytes per row ``i``."""
    if dialect == "sqlite":
        return f"randomblob({size})"
    return f"decode(repeat(md5('{salt}' || i), {size // 16}), 'hex')"


def _bulk_inserts(dialect: str, rows: int, now_us: int) -> list[tuple[str, int]]:
    """(INSERT … SELECT over ``seq(i)``, how many ``i``) for every table, parents first.

    Shape: ``rows`` grants, each paid once by one of ``rows`` payments (a share, two ledger
    legs, a grant_used notification, an idempotency key, a used challenge); one user terminal
    and card per 10 grants, one merchant (and its terminal) per 50 payments. Card outstanding
    amounts, grant remainders and the ledger agree (``ledger.audit`` is clean).
    """
    users, merchants = max(rows // 10, 2), max(rows // 50, 1)
    user, merchant = f"(i % {users})", f"(i % {merchants})"
    amount = f"(100 + ({user} % 89) * 10)"  # depends only on the source, see outstanding
    paid_per_source = f"({rows // users} + CASE WHEN i < {rows % users} THEN 1 ELSE 0 END)"
    past = f"({now_us} - ({rows} - i) * 1000000)"  # one payment a second, ending now
    recent = f"({now_us} - ({rows} - i) * {max(250_000_000 // rows, 1)})"  # last ~4 minutes
    blob = functools.partial(_blob, dialect)
    return [
        (
            "INSERT INTO merchants (merchant_id, name, category, region, settlement_account, "
            f"created_at) SELECT 'm_bulk_' || i, 'Shop ' || i, '5812', 'KR-11', 'KR-' || i, "
            f"{past} FROM {{seq}}",
            merchants,
        ),
        (
            "INSERT INTO terminals (terminal_id, role, label, public_key, merchant_id, "
            f"created_at) SELECT 'tu_bulk_' || i, 'user', 'user ' || i, {blob(32, 'u')}, NULL, "
            f"{past} FROM {{seq}}",
            users,
        ),
        (
            "INSERT INTO terminals (terminal_id, role, label, public_key, merchant_id, "
            f"created_at) SELECT 'tm_bulk_' || i, 'merchant', 'till ' || i, {blob(32, 'm')}, "
            f"'m_bulk_' || i, {past} FROM {{seq}}",
            merchants,
        ),
        (
            "INSERT INTO funding_sources (source_id, owner_terminal, kind, currency, status, "
            "card_number_enc, card_masked, expiry, credit_limit, outstanding, balance, "
            f"created_at) SELECT 'src_bulk_' || i, 'tu_bulk_' || i, 'card', '{_CURRENCY}', "
            f"'active', {blob(32, 'c')}, '**** 1111', '12/39', 1000000000000, "
            f"{paid_per_source} * {amount}, NULL, {past} FROM {{seq}}",
            users,
        ),
        (
            "INSERT INTO grants (grant_id, virtual_card_number, source_id, issuing_terminal, "
            "currency, auth_code_enc, amount_cap, max_uses, remaining_amount, remaining_uses, "
            "status, created_at) SELECT 'g_bulk_' || i, CAST(9000000000000000 + i AS TEXT), "
            f"'src_bulk_' || {user}, 'tu_bulk_' || {user}, '{_CURRENCY}', {blob(32, 'a')}, "
            f"100000, 10, 100000 - {amount}, 9, 'active', {past} FROM {{seq}}",
            rows,
        ),
        (
            "INSERT INTO grant_terminals (grant_id, terminal_id) "
            f"SELECT 'g_bulk_' || i, 'tu_bulk_' || ((i + 1) % {users}) FROM {{seq}}",
            rows,
        ),
        (
            "INSERT INTO payments (payment_id, merchant_id, presenting_terminal, amount, "
            "currency, purpose, bill_id, approval_code, refunded, created_at) "
            f"SELECT 'p_bulk_' || i, 'm_bulk_' || {merchant}, 'tu_bulk_' || ((i + 1) % {users}), "
            f"{amount}, '{_CURRENCY}', '5812', "
            "CASE WHEN i % 10 = 0 THEN 'b_bulk_' || i ELSE NULL END, 'A1B2C3', 0, "
            f"{past} FROM {{seq}}",
            rows,
        ),
        (
            "INSERT INTO payment_shares (payment_id, seq, grant_id, source_id, amount) "
            f"SELECT 'p_bulk_' || i, 0, 'g_bulk_' || i, 'src_bulk_' || {user}, {amount} "
            "FROM {seq}",
            rows,
        ),
        (
            "INSERT INTO ledger_entries (txn_id, leg, account, amount, currency, created_at) "
            f"SELECT 'p_bulk_' || i, 0, 'source:src_bulk_' || {user}, -{amount}, "
            f"'{_CURRENCY}', {past} FROM {{seq}}",
            rows,
        ),
        (
            "INSERT INTO ledger_entries (txn_id, leg, account, amount, currency, created_at) "
            f"SELECT 'p_bulk_' || i, 1, 'merchant:m_bulk_' || {merchant}, {amount}, "
            f"'{_CURRENCY}', {past} FROM {{seq}}",
            rows,
        ),
        (
            "INSERT INTO notifications (notification_id, owner_terminal, kind, grant_id, amount, "
            "currency, merchant_id, terminal_id, message, created_at) "
            f"SELECT 'n_bulk_' || i, 'tu_bulk_' || {user}, 'grant_used', 'g_bulk_' || i, "
            f"{amount}, '{_CURRENCY}', 'm_bulk_' || {merchant}, "
            f"'tu_bulk_' || ((i + 1) % {users}), 'grant g_bulk_' || i || ' paid', {past} "
            "FROM {seq}",
            rows,
        ),
        (
            "INSERT INTO idempotency_keys (merchant_id, idem_key, request_hash, status_code, "
            f"response, created_at) SELECT 'm_bulk_' || {merchant}, 'k_bulk_' || i, "
            f"{blob(32, 'k')}, 200, '{{}}', {recent} FROM {{seq}}",
            rows,
        ),
        (
            "INSERT INTO challenges (merchant_id, challenge, created_at, payment_id) "
            f"SELECT 'm_bulk_' || {merchant}, {blob(16, 'h')}, {past}, 'p_bulk_' || i "
            "FROM {seq}",
            rows,
        ),
        (
            "INSERT INTO request_nonces (terminal_id, nonce, seen_at) "
            f"SELECT 'tm_bulk_' || {merchant}, 'nonce_' || i, {recent} FROM {{seq}}",
            rows,
        ),
    ]


def populate(
    db: Database,
    rows: int,
    now_us: int | None = None,
    progress: Callable[[str, int, float], None] | None = None,
) -> None:
    """Add ``rows`` grants and ``rows`` past payments (and everything that goes with them) by
    bulk SQL, one transaction per statement; then PostgreSQL ANALYZEs them, as autovacuum
    would. PostgreSQL skips the per-row foreign key triggers while loading (the rows are
    consistent by construction), which needs a superuser such as the test's ``postgres``.
    ``progress(table, rows, seconds)`` hears of each statement as it completes."""
    now_us = now_us if now_us is not None else int(time.time() * 1_000_000)
    prefix, series = _SERIES[db.dialect]
    inserts = _bulk_inserts(db.dialect, rows, now_us)

    def load(tx: Tx, statement: str, count: int) -> None:
        sql = prefix.format(n=count) + statement.replace("{seq}", series.format(n=count))
        if tx.dialect == "postgresql":
            tx.execute("SET LOCAL session_replication_role = replica")
        tx.execute(sql)

    tables = [re.findall(r"INSERT INTO (\w+)", statement)[0] for statement, _ in inserts]
    for table, (statement, count) in zip(tables, inserts, strict=True):
        began = time.perf_counter()
        db.run(functools.partial(load, statement=statement, count=count))
        if progress is not None:
            progress(table, count, time.perf_counter() - began)
    if db.dialect == "postgresql":
        began = time.perf_counter()
        db.run(lambda tx: tx.execute(f"ANALYZE {', '.join(dict.fromkeys(tables))}"))
        if progress is not None:
            progress("ANALYZE", 0, time.perf_counter() - began)


# --- observing the statements ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement as the driver received it: SQLite's text has its values bound in;
    PostgreSQL's has ``?`` placeholders and ``params``."""

    sql: str
    params: tuple[Any, ...] = ()


@contextlib.contextmanager
def observed(db: Database) -> Iterator[list[Statement]]:
    """Every statement ``db`` sends to the database inside the block, in order."""
    seen: list[Statement] = []
    if db.dialect == "sqlite":
        conn = db._conn  # type: ignore[attr-defined]  # the one connection the server writes with
        conn.set_trace_callback(lambda sql: seen.append(Statement(sql)))
        try:
            yield seen
        finally:
            conn.set_trace_callback(None)
        return
    from nfcpay.server.store.postgres import PostgresTx

    bound = PostgresTx._bound

    def traced_bound(self: PostgresTx, cur: Any, sql: str, params: Any) -> str:
        seen.append(Statement(sql, tuple(params or ())))
        return bound(self, cur, sql, params)

    PostgresTx._bound = traced_bound  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        PostgresTx._bound = bound  # type: ignore[method-assign]


# --- plans -------------------------------------------------------------------------------------

_DML = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)
_TABLE_REF = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+(\w+)(?:\s+(?:AS\s+)?(\w+))?", re.I)


@dataclass
class Plan:
    statement: Statement
    lines: list[str]
    #: The plan lines that read a whole table or index of a table that grows.
    full_scans: list[str] = field(default_factory=list)

    def describe(self) -> str:
        params = f"\n  params: {self.statement.params!r:.300}" if self.statement.params else ""
        flagged = "".join(f"\n  FULL SCAN: {line}" for line in self.full_scans)
        plan = "".join(f"\n    {line}" for line in self.lines) or "\n    (no table access)"
        return f"{self.statement.sql:.600}{params}{plan}{flagged}"


def explain(db: Database, statements: list[Statement]) -> list[Plan]:
    """The plan of each distinct DML statement, run with its own parameters."""
    unique = {(s.sql, repr(s.params)): s for s in statements if _DML.match(s.sql)}
    return db.run(lambda tx: [_explain_one(tx, s) for s in unique.values()])


def _explain_one(tx: Tx, statement: Statement) -> Plan:
    if tx.dialect == "sqlite":
        rows = tx.all(f"EXPLAIN QUERY PLAN {statement.sql}")
        lines = [str(row["detail"]) for row in rows]
        return Plan(statement, lines, _sqlite_scans(statement.sql, lines))
    (row,) = tx.all(f"EXPLAIN (FORMAT JSON) {statement.sql}", statement.params)
    plan = Plan(statement, [])
    _walk_pg(row["QUERY PLAN"][0]["Plan"], 0, plan)
    return plan


def _sqlite_scans(sql: str, lines: list[str]) -> list[str]:
    """``SCAN x`` reads every row of ``x`` (with or without an index); ``SEARCH`` does not."""
    tables = {}
    for table, alias in _TABLE_REF.findall(sql):
        tables[table] = table
        if alias:
            tables.setdefault(alias, table)
    scans = []
    for line in lines:
        match = re.match(r"SCAN (\w+)", line)
        if match and tables.get(match.group(1), "") not in {"", *STATIC_TABLES}:
            scans.append(line)
    return scans


def _walk_pg(node: dict[str, Any], depth: int, plan: Plan) -> None:
    kind, table = node["Node Type"], node.get("Relation Name")
    text = kind + (f" on {table}" if table else "")
    if "Index Name" in node:
        text += f" using {node['Index Name']}"
    cond = node.get("Index Cond") or node.get("Recheck Cond")
    text += f" ({cond})" if cond else ""
    plan.lines.append("  " * depth + text)
    whole_index = kind in {"Index Scan", "Index Only Scan"} and "Index Cond" not in node
    if table not in {None, *STATIC_TABLES} and (kind == "Seq Scan" or whole_index):
        plan.full_scans.append(text)
    for child in node.get("Plans", []):
        _walk_pg(child, depth + 1, plan)


def report(plans: list[Plan]) -> str:
    """Each plan that touches a table (plain INSERTs do not), described."""
    return "\n\n".join(plan.describe() for plan in plans if plan.lines)


# --- the hot paths -----------------------------------------------------------------------------


def hot_path_scene(server: InProcessServer) -> tuple[PaymentScene, tuple[str, bytes]]:
    """A scene whose grant pays many times, and a second grant that expires in 30 s (its id
    and auth code): call before :func:`populate`, then :func:`hot_path_plans`."""
    scene = payment_scene(
        server.url,
        transport=server.transport,
        source={"kind": "card", "limit": 10**9},
        amount_cap=10**8,
        max_uses=1000,
    )
    expiring = scene.another_grant(
        amount_cap=5000, valid_until=datetime.now(UTC) + timedelta(seconds=30)
    )
    return scene, (expiring.grant_id, expiring.auth_code)


def pay_a_bill(scene: PaymentScene, amount: int) -> dict[str, Any]:
    """A group bill the target opens and pays with a member's grant bound to it (the owner
    plays the member)."""
    bill = scene.target.client.open_bill(total=amount, currency=scene.currency)
    bill_id = bill["bill_id"]
    return scene.another_grant(amount_cap=amount, bill_id=bill_id).pay(amount, bill_id=bill_id)


def drive_hot_paths(
    server: InProcessServer, scene: PaymentScene, expiring: tuple[str, bytes]
) -> None:
    """Approve (and the target asks what its means made), decline three ways, refund, issue a
    grant and read notifications, checking each answer. The server clock runs
    :data:`_PRUNE_DUE_S` ahead, so the once-a-minute nonce prune runs too and the 30-second
    grant has expired."""
    started = server.runtime.clock
    server.runtime.clock = lambda: started() + _PRUNE_DUE_S
    try:
        challenge = secrets.token_bytes(16)
        paid = scene.pay(1000, challenge=challenge)
        assert paid["status"] == "approved", paid
        merchant_id = str(scene.merchant.merchant_id)
        told = scene.target.client.presentation_outcome(merchant_id, challenge)
        assert told is not None and told["payment_id"] == paid["payment_id"], told
        bill = pay_a_bill(scene, 700)
        assert bill["status"] == "approved", bill
        wrong_auth = scene.usage_auth(scene.owner)  # computed for another presenter
        declined = scene.pay(500, grants=[(scene.grant_id, wrong_auth, 500)])
        assert declined["decline_code"] == "usage_auth_mismatch", declined
        declined = scene.pay(500, presenter=scene.owner)
        assert declined["decline_code"] == "terminal_not_allowed", declined
        grant_id, auth_code = expiring
        usage = crypto.usage_auth(
            auth_code, grant_id, scene.owner.terminal_id, scene.target.terminal_id
        )
        declined = scene.pay(500, grants=[(grant_id, usage, 500)])
        assert declined["decline_code"] == "grant_expired", declined
        refund = scene.merchant.client.refund(paid["payment_id"], 300)
        assert refund["remaining_refundable"] == 700, refund
        scene.owner.client.issue_grant(
            scene.source["source_id"], [scene.target.terminal_id], amount_cap=900, currency="KRW"
        )
        first = scene.owner.client.notifications()
        assert first, "the owner has notifications"
        scene.owner.client.notifications(after=first[0]["notification_id"])
    finally:
        server.runtime.clock = started


def hot_path_plans(
    server: InProcessServer, scene: PaymentScene, expiring: tuple[str, bytes]
) -> list[Plan]:
    """Run the hot paths once, observing the server's SQL, and explain every statement."""
    with observed(server.runtime.db) as statements:
        drive_hot_paths(server, scene, expiring)
    sql = " ".join(s.sql for s in statements)
    for must in ("INSERT INTO payments", "INSERT INTO refunds", "FROM notifications"):
        assert must in sql, f"the observed SQL lacks {must!r}: observation is broken"
    return explain(server.runtime.db, statements)


# --- the tests ---------------------------------------------------------------------------------
