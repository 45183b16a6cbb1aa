"""Who may read another terminal's public profile: its label, role, merchant name and key
fingerprint. The one rule (:func:`may_read`) is that only a *party* with it may:

* a grant: its owner and each terminal the grant is bound to (a grant sent through the
  server is delivered between the same two, so a delivery adds no one);
* a payment: the merchant that took it, and the terminal that presented the means and the
  owners of the grants it charged;
* a bill: its collector and its members (the owners of the grants naming it);
* an attempt on a grant of yours that was declined: its owner reads the terminal that
  presented the grant and the merchant where it did, as its notification names them
  (:mod:`.notifications`); the presenting terminal learns nothing of the owner this way.

A terminal always reads its own. Anyone else is answered as for a terminal that does not
exist, so the answer never reveals that one does. Labels are chosen by their owners (anyone
can register as Alice): every answer keeps the id beside the name, and the key fingerprint
is what tells two Alices apart.

The answers that embed names (payments, grants, deliveries, notifications) show only
parties to the thing they describe, so they follow the same rule without asking it.
"""

from __future__ import annotations

from typing import Any

from nfcpay.errors import NotFound
from nfcpay.server.runtime import Caller
from nfcpay.server.services import terminals
from nfcpay.server.store import Row, Tx

_PROFILE = (
    "SELECT t.terminal_id, t.role, t.label, t.public_key, t.merchant_id, m.name "
    "FROM terminals t LEFT JOIN merchants m ON m.merchant_id = t.merchant_id"
)

#: One statement per way two terminals are parties, each a test of ``EXISTS`` over
#: (reader, its merchant, subject, its merchant) and the same four swapped where the relation
#: goes both ways. A NULL merchant matches nothing.
_GRANT = (
    "SELECT 1 AS x FROM grants g JOIN grant_terminals a ON a.grant_id = g.grant_id "
    "WHERE g.issuing_terminal = ? AND a.terminal_id = ?"
)
_PAYMENT_PRESENTED = "SELECT 1 AS x FROM payments WHERE merchant_id = ? AND presenting_terminal = ?"
_PAYMENT_CHARGED = (
    "SELECT 1 AS x FROM payments p JOIN payment_shares s ON s.payment_id = p.payment_id "
    "JOIN grants g ON g.grant_id = s.grant_id WHERE p.merchant_id = ? AND g.issuing_terminal = ?"
)
_BILL = (
    "SELECT 1 AS x FROM bills b JOIN grants g ON g.bill_id = b.bill_id "
    "WHERE b.collector_terminal = ? AND g.issuing_terminal = ?"
)
_ATTEMPT = (
    "SELECT 1 AS x FROM notifications WHERE owner_terminal = ? AND (terminal_id = ? "
    "OR merchant_id = ?)"
)


def may_read(tx: Tx, reader: Row, subject: Row) -> bool:
    """Whether terminal ``reader`` may read terminal ``subject``'s profile (both rows with
    ``terminal_id`` and ``merchant_id``): itself, or a party with it (see the module)."""
    a, b = reader["terminal_id"], subject["terminal_id"]
    ma, mb = reader["merchant_id"], subject["merchant_id"]
    if a == b:
        return True
    checks: list[tuple[str, tuple[Any, ...]]] = [
        (_GRANT, (a, b)),
        (_GRANT, (b, a)),
        (_BILL, (a, b)),
        (_BILL, (b, a)),
        (_ATTEMPT, (a, b, mb)),
    ]
    for sql in (_PAYMENT_PRESENTED, _PAYMENT_CHARGED):
        checks += [(sql, (ma, b))] if ma else []
        checks += [(sql, (mb, a))] if mb else []
    return any(tx.one(sql, params) for sql, params in checks)


def terminal(tx: Tx, caller: Caller, terminal_id: str) -> dict[str, Any]:
    """Terminal ``terminal_id``'s public profile, if the caller may read it (NotFound, as
    for an unknown terminal, otherwise)."""
    return _readable(
        tx, caller, terminal_id, tx.one(f"{_PROFILE} WHERE t.terminal_id = ?", (terminal_id,))
    )


def merchant(tx: Tx, caller: Caller, merchant_id: str) -> dict[str, Any]:
    """The public profile of merchant ``merchant_id``'s terminal, as :func:`terminal`."""
    return _readable(
        tx, caller, merchant_id, tx.one(f"{_PROFILE} WHERE t.merchant_id = ?", (merchant_id,))
    )


def _readable(tx: Tx, caller: Caller, asked: str, row: Row | None) -> dict[str, Any]:
    reader = {"terminal_id": caller.terminal_id, "merchant_id": caller.merchant_id}
    if row is None or not may_read(tx, reader, row):
        raise NotFound(
            f"no terminal {asked} that this terminal is a party with (a grant, payment or "
            "bill between the two)",
            code="terminal_not_found",
        )
    out = terminals.public_view(row)
    if row["merchant_id"]:
        out |= {"merchant_id": row["merchant_id"], "merchant_name": row["name"]}
    return out
