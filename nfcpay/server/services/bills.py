"""Group bills as server objects owned by their collector.

The collector's terminal opens a bill (currency, total, split mode) and the server mints its
id, so nobody can claim a bill id before its collector does. A member's grant names the bill
when it is issued (:func:`require_open`), and the bill's members are exactly the grants
naming it and bound to its collector: there is no member list that could disagree with them.
Only the collector presents a payment for the bill (:func:`.rules.bill_rule`); the approval
marks it paid in the same transaction (:func:`mark_paid`).

Only the collector sees a bill: to anyone else an existing bill and a made-up id look alike.
"""

from __future__ import annotations

from typing import Any

from nfcpay import crypto
from nfcpay.errors import Conflict, Forbidden, InvalidRequest, NotFound
from nfcpay.server.runtime import Caller, Runtime
from nfcpay.server.schemas import BillIn
from nfcpay.server.services.formats import iso
from nfcpay.server.store import Row, Tx

BILL_COLUMNS = "bill_id, collector_terminal, currency, total, mode, status, payment_id, created_at"
#: Said wherever a bill id is not (yet) known to the server: a collector on an nfcpay from
#: before bills were opened with the server mints its ids itself.
OPENED_BY_COLLECTOR = (
    "a bill is opened with the payment server by its collector (`nfcpay group collect`); "
    "a collector on an older nfcpay must upgrade nfcpay"
)


def open_bill(tx: Tx, rt: Runtime, caller: Caller, body: BillIn) -> dict[str, Any]:
    """Open a bill collected by the calling (target) terminal; the server picks its id."""
    if caller.role != "target":
        raise Forbidden("only target terminals collect group bills")
    bill_id = crypto.new_id("b")
    tx.execute(
        f"INSERT INTO bills ({BILL_COLUMNS}) VALUES (?, ?, ?, ?, ?, 'open', NULL, ?)",
        (bill_id, caller.terminal_id, body.currency, body.total, body.mode, rt.now_us()),
    )
    return get(tx, caller, bill_id)


def get(tx: Tx, caller: Caller, bill_id: str) -> dict[str, Any]:
    """The caller's bill with its members; any other bill is "not found", existing or not."""
    row = tx.one(f"SELECT {BILL_COLUMNS} FROM bills WHERE bill_id = ?", (bill_id,))
    if row is None or row["collector_terminal"] != caller.terminal_id:
        raise NotFound(f"no bill {bill_id} of yours", code="bill_not_found")
    return _view(tx, row)


def require_open(tx: Tx, bill_id: str, currency: str) -> None:
    """A grant in ``currency`` may name bill ``bill_id``: it exists, is unpaid, same currency."""
    row = tx.one("SELECT currency, status FROM bills WHERE bill_id = ?", (bill_id,))
    if row is None:
        raise InvalidRequest(
            f"no bill {bill_id} is open: {OPENED_BY_COLLECTOR}",
            code="bill_not_found",
            field="bill_id",
        )
    if row["status"] == "paid":
        raise Conflict(f"bill {bill_id} is already paid", code="bill_already_paid")
    if row["currency"] != currency:
        raise InvalidRequest(
            f"bill {bill_id} is in {row['currency']}, the grant in {currency}",
            code="currency_mismatch",
            field="currency",
        )


def load(tx: Tx, bill_id: str, *, lock: bool = False) -> Row | None:
    """The bill a payment names (None: no such bill); with ``lock``, locked until commit."""
    clause = tx.for_update if lock else ""
    return tx.one(f"SELECT {BILL_COLUMNS} FROM bills WHERE bill_id = ?{clause}", (bill_id,))


def mark_paid(tx: Tx, bill_id: str, payment_id: str) -> None:
    tx.execute(
        "UPDATE bills SET status = 'paid', payment_id = ? WHERE bill_id = ?", (payment_id, bill_id)
    )


def _view(tx: Tx, row: Row) -> dict[str, Any]:
    members = tx.all(
        "SELECT g.grant_id, g.issuing_terminal, g.amount_cap, g.created_at FROM grants g "
        "JOIN grant_terminals a ON a.grant_id = g.grant_id AND a.terminal_id = ? "
        "WHERE g.bill_id = ? ORDER BY g.created_at, g.grant_id",
        (row["collector_terminal"], row["bill_id"]),
    )
    return {
        "bill_id": row["bill_id"],
        "collector_terminal": row["collector_terminal"],
        "currency": row["currency"],
        "total": row["total"],
        "mode": row["mode"],
        "status": row["status"],
        "payment_id": row["payment_id"],
        "created_at": iso(row["created_at"]),
        "members": [
            {
                "grant_id": m["grant_id"],
                "member": m["issuing_terminal"],
                "amount": m["amount_cap"],
                "joined_at": iso(m["created_at"]),
            }
            for m in members
        ],
    }
