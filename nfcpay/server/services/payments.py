"""Approved payments as merchants see them: listing, one payment, and the shared view
(which :mod:`.presentations` also shows the presenting terminal)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nfcpay.errors import Forbidden, NotFound
from nfcpay.server.runtime import Caller
from nfcpay.server.services.formats import iso
from nfcpay.server.store import Row, Tx

PAGE_SIZE = 200

_COLUMNS = (
    "payment_id, merchant_id, presenting_terminal, amount, currency, purpose, bill_id, "
    "approval_code, refunded, created_at"
)
#: A payment with the names of its two parties, which each of them may read (:mod:`.profiles`).
_NAMED = (
    "SELECT "
    + ", ".join(f"p.{column}" for column in _COLUMNS.split(", "))
    + ", m.name AS merchant_name, t.label AS presenting_label FROM payments p "
    "JOIN merchants m ON m.merchant_id = p.merchant_id "
    "LEFT JOIN terminals t ON t.terminal_id = p.presenting_terminal"
)


def require_merchant(caller: Caller, doing: str = "take payments") -> str:
    """The caller's merchant id; Forbidden for any other terminal ("only merchant terminals
    {doing}")."""
    if caller.merchant_id is None:
        raise Forbidden(f"only merchant terminals {doing}")
    return caller.merchant_id


def view(payment: Row, shares: Sequence[Row]) -> dict[str, Any]:
    """The payment as the API shows it (``payment`` also holds ``merchant_name`` and
    ``presenting_label``); grant shares never reveal the funding source."""
    return {
        "payment_id": payment["payment_id"],
        "status": "approved",
        "approval_code": payment["approval_code"],
        "amount": payment["amount"],
        "currency": payment["currency"],
        "merchant_id": payment["merchant_id"],
        "merchant_name": payment["merchant_name"],
        "presenting_terminal": payment["presenting_terminal"],
        "presenting_label": payment["presenting_label"],
        "purpose": payment["purpose"],
        "bill_id": payment["bill_id"],
        "refunded": payment["refunded"],
        "created_at": iso(payment["created_at"]),
        "shares": [
            {"grant_id": s["grant_id"], "amount": s["amount"]}
            if s["grant_id"]
            else {"source_id": s["source_id"], "amount": s["amount"]}
            for s in shares
        ],
    }


def find(tx: Tx, payment_id: str, *, lock: bool = False) -> Row | None:
    """The payment row with its parties' names, whoever may see it (callers check that);
    ``lock`` locks the payment's row alone."""
    if lock:
        tx.one(
            f"SELECT payment_id FROM payments WHERE payment_id = ?{tx.for_update}", (payment_id,)
        )
    return tx.one(f"{_NAMED} WHERE p.payment_id = ?", (payment_id,))


def load(tx: Tx, caller: Caller, payment_id: str, *, lock: bool = False) -> Row:
    merchant_id = require_merchant(caller)
    row = find(tx, payment_id, lock=lock)
    if row is None or row["merchant_id"] != merchant_id:
        raise NotFound(f"no payment {payment_id} of yours", code="payment_not_found")
    return row


def load_shares(tx: Tx, payment_id: str) -> list[Row]:
    return tx.all(
        "SELECT seq, grant_id, source_id, amount, refunded FROM payment_shares "
        "WHERE payment_id = ? ORDER BY seq",
        (payment_id,),
    )


def get(tx: Tx, caller: Caller, payment_id: str) -> dict[str, Any]:
    return view(load(tx, caller, payment_id), load_shares(tx, payment_id))


def list_own(tx: Tx, caller: Caller) -> dict[str, Any]:
    merchant_id = require_merchant(caller)
    rows = tx.all(
        f"{_NAMED} WHERE p.merchant_id = ? ORDER BY p.created_at DESC LIMIT {PAGE_SIZE}",
        (merchant_id,),
    )
    return {"payments": [view(row, load_shares(tx, row["payment_id"])) for row in rows]}
