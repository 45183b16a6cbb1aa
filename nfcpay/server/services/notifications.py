"""Owner notifications: written in the same transaction as the event they report."""

from __future__ import annotations

from typing import Any

from nfcpay.crypto import new_id
from nfcpay.errors import InvalidRequest
from nfcpay.server.services.formats import iso
from nfcpay.server.store import Row, Tx

KINDS = frozenset(
    {
        "grant_used",
        "terminal_not_allowed",
        "usage_auth_mismatch",
        "limit_declined",
        "grant_exhausted",
        "grant_expired",
        "grant_revoked",
        "grant_locked",
        "bill_mismatch",
        "forged_presentation",
    }
)
PAGE_SIZE = 100

_COLUMNS = (
    "notification_id, kind, grant_id, amount, currency, merchant_id, terminal_id, bill_id, "
    "message, created_at"
)


def notify(
    tx: Tx,
    now_us: int,
    owner: str,
    kind: str,
    message: str,
    *,
    grant_id: str | None = None,
    amount: int | None = None,
    currency: str | None = None,
    merchant_id: str | None = None,
    terminal_id: str | None = None,
    bill_id: str | None = None,
) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    _serialize_stream(tx, owner)
    tx.execute(
        f"INSERT INTO notifications (owner_terminal, {_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            owner,
            new_id("n"),
            kind,
            grant_id,
            amount,
            currency,
            merchant_id,
            terminal_id,
            bill_id,
            message,
            now_us,
        ),
    )


def _serialize_stream(tx: Tx, owner: str) -> None:
    """Make one owner's notifications commit in ``seq`` order.

    Readers page through a stream with ``seq > cursor``. On PostgreSQL ``seq`` comes from a
    sequence at INSERT time, so two concurrent transactions could commit their rows out of
    order, and a reader whose cursor already passed the later number would never see the
    earlier one. A per-owner advisory lock held until commit makes the next writer for this
    owner wait, so it takes its number after this one commits. (An advisory lock, not a row
    lock: the terminal row's key-share locks from foreign keys must not queue behind it.)
    SQLite has one writer, so nothing is needed there.
    """
    if tx.dialect == "postgresql":
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 1))", (f"notify:{owner}",))


def after_seq(tx: Tx, owner: str, after: str | None) -> int:
    """The position of notification ``after`` in the owner's stream (0 for the start)."""
    if after is None:
        return 0
    seq = tx.scalar(
        "SELECT seq FROM notifications WHERE notification_id = ? AND owner_terminal = ?",
        (after, owner),
    )
    if seq is None:
        raise InvalidRequest(f"no notification {after} of yours", field="after")
    return int(seq)


def newer_than(tx: Tx, owner: str, seq: int) -> list[dict[str, Any]]:
    rows = tx.all(
        f"SELECT {_COLUMNS} FROM notifications WHERE owner_terminal = ? AND seq > ? "
        f"ORDER BY seq LIMIT {PAGE_SIZE}",
        (owner, seq),
    )
    return [view(row) for row in rows]


def view(row: Row) -> dict[str, Any]:
    out = {key: row[key] for key in _COLUMNS.split(", ") if row[key] is not None}
    out["created_at"] = iso(row["created_at"])
    return out
