"""Owner notifications: written in the same transaction as the event they report, in the
words of :data:`TEXTS`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nfcpay.crypto import new_id
from nfcpay.errors import InvalidRequest
from nfcpay.money import format_minor
from nfcpay.names import labelled
from nfcpay.server.services.formats import iso
from nfcpay.server.store import Row, Tx

PAGE_SIZE = 100

#: What the owner reads, per kind: a template filled from the notification's own fields
#: (``grant_id``, ``merchant_id``, ``terminal_id``, ``bill_id``), ``money`` (its amount in its
#: currency), the parties as people read them (:func:`parties`: ``merchant`` and
#: ``terminal``), the bill phrases ``for_bill`` (`` for bill b_…`` or nothing),
#: ``your_share`` and ``outside``, and the kind's own facts: ``grant_bill`` (the bill a grant
#: is bound to), ``what`` ("card limit", "wallet balance", ...) and ``after`` (wrong
#: usage-auths that lock).
TEXTS: dict[str, str] = {
    "grant_used": "{terminal} paid {money}{your_share} at {merchant} with grant {grant_id}",
    "grant_exhausted": "grant {grant_id} is used up",
    "grant_expired": "grant {grant_id} has expired",
    "grant_revoked": "grant {grant_id} was revoked",
    "grant_delivered": "grant {grant_id} was delivered to {terminal}",
    "grant_locked": "grant {grant_id} is locked after {after} wrong usage-auth values",
    "terminal_not_allowed": (
        "{terminal} tried to pay {money}{for_bill} at {merchant} with grant {grant_id}"
    ),
    "usage_auth_mismatch": (
        "a wrong usage-auth was presented for grant {grant_id} ({money}{for_bill} at {merchant})"
    ),
    "forged_presentation": (
        "a copy of grant {grant_id} was presented under {terminal}'s id without its "
        "signature ({money}{for_bill} at {merchant})"
    ),
    "bill_mismatch": (
        "grant {grant_id} for bill {grant_bill} was presented for {outside} ({money} at {merchant})"
    ),
    "limit_declined": "a payment of {money}{for_bill} at {merchant} was declined: {what} too low",
}
KINDS = frozenset(TEXTS)

_COLUMNS = (
    "notification_id, kind, grant_id, amount, currency, merchant_id, terminal_id, bill_id, "
    "message, created_at"
)
#: The parties' names beside a notification's ids, each looked up by its primary key (a join
#: lets PostgreSQL's planner scan the whole merchants table while the page is small).
_NAMES = (
    "(SELECT m.name FROM merchants m WHERE m.merchant_id = n.merchant_id) AS merchant_name, "
    "(SELECT t.label FROM terminals t WHERE t.terminal_id = n.terminal_id) AS terminal_label"
)


def parties(
    merchant_id: str | None,
    merchant_name: str | None,
    terminal_id: str | None,
    terminal_label: str | None,
) -> dict[str, str | None]:
    """``merchant`` and ``terminal`` as the texts name them: ``Corner Bistro (m_hcyl…)``,
    ``Mallory (t_otmc…)``; without a name known, by id alone (``m_…``, ``terminal t_…``)."""
    terminal = None
    if terminal_id is not None:
        terminal = (
            labelled(terminal_label, terminal_id) if terminal_label else f"terminal {terminal_id}"
        )
    return {
        "merchant": None if merchant_id is None else labelled(merchant_name, merchant_id),
        "terminal": terminal,
    }


def text(kind: str, facts: Mapping[str, Any] | None = None, **fields: Any) -> str:
    """The owner's text for a notification of ``kind`` with these ``fields`` (the columns
    :func:`notify` takes) and ``facts`` (the kind's own, see :data:`TEXTS`, and the parties'
    names, ``merchant_name`` and ``terminal_label``, each optional: without one the text
    names that party by its id)."""
    facts = dict(facts or {})
    names = parties(
        fields.get("merchant_id"),
        facts.pop("merchant_name", None),
        fields.get("terminal_id"),
        facts.pop("terminal_label", None),
    )
    amount, currency, bill_id = fields.get("amount"), fields.get("currency"), fields.get("bill_id")
    return TEXTS[kind].format(
        **fields,
        **facts,
        **names,
        money=None if amount is None or currency is None else format_minor(amount, currency),
        for_bill=f" for bill {bill_id}" if bill_id else "",
        your_share=f" (your share of bill {bill_id})" if bill_id else "",
        outside=f"bill {bill_id}" if bill_id else "a payment outside any bill",
    )


def notify(
    tx: Tx,
    now_us: int,
    owner: str,
    kind: str,
    message: str | None = None,
    *,
    grant_id: str | None = None,
    amount: int | None = None,
    currency: str | None = None,
    merchant_id: str | None = None,
    terminal_id: str | None = None,
    bill_id: str | None = None,
    facts: Mapping[str, Any] | None = None,
) -> None:
    """Write one notification for ``owner``; without ``message``, in the words of
    :data:`TEXTS` (``facts`` fill what the columns do not)."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    if message is None:
        message = text(
            kind,
            facts,
            grant_id=grant_id,
            amount=amount,
            currency=currency,
            merchant_id=merchant_id,
            terminal_id=terminal_id,
            bill_id=bill_id,
        )
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
    """The owner's notifications after ``seq``, each with the names of the parties it names
    (a notification makes them parties: :mod:`.profiles`)."""
    columns = ", ".join(f"n.{column}" for column in _COLUMNS.split(", "))
    rows = tx.all(
        f"SELECT {columns}, {_NAMES} FROM notifications n "
        f"WHERE n.owner_terminal = ? AND n.seq > ? ORDER BY n.seq LIMIT {PAGE_SIZE}",
        (owner, seq),
    )
    return [view(row) for row in rows]


def view(row: Row) -> dict[str, Any]:
    """A notification as its owner reads it: its columns that are set (``message`` as it was
    worded when written), and ``merchant_name`` and ``terminal_label`` of the parties named."""
    keys = [*_COLUMNS.split(", "), "merchant_name", "terminal_label"]
    out = {key: row[key] for key in keys if row[key] is not None}
    out["created_at"] = iso(row["created_at"])
    return out
