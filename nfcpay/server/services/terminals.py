"""Terminal registration: a device key pair plus a role; merchants also get a merchant row."""

from __future__ import annotations

from typing import Any

from nfcpay import crypto
from nfcpay.errors import Conflict, InvalidRequest, NotFound
from nfcpay.server.runtime import Caller
from nfcpay.server.schemas import TerminalIn
from nfcpay.server.services import merchants
from nfcpay.server.store import Row, Tx


def register(tx: Tx, now_us: int, body: TerminalIn, public_key: bytes) -> dict[str, Any]:
    if (body.role == "merchant") != (body.merchant is not None):
        raise InvalidRequest(
            "merchant details are required for role=merchant and only for it", field="merchant"
        )
    if tx.one("SELECT 1 AS x FROM terminals WHERE public_key = ?", (public_key,)):
        raise Conflict("this public key is already registered", code="terminal_exists")
    merchant_id = None
    if body.merchant is not None:
        merchant_id = crypto.new_id("m")
        m = body.merchant
        tx.execute(
            "INSERT INTO merchants (merchant_id, name, category, region, settlement_account, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (merchant_id, m.name, m.all_categories[0], m.region, m.settlement_account, now_us),
        )
    terminal_id = crypto.new_id("t")
    inserted = tx.execute(
        "INSERT INTO terminals (terminal_id, role, label, public_key, merchant_id, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (public_key) DO NOTHING",
        (terminal_id, body.role, body.label, public_key, merchant_id, now_us),
    )
    if inserted.rowcount != 1:  # the same key registered at the same moment by another request
        raise Conflict("this public key is already registered", code="terminal_exists")
    if body.merchant is not None and merchant_id is not None:
        merchants.record(tx, now_us, merchant_id, terminal_id, body.merchant.all_categories)
    return get(tx, terminal_id)


def get(tx: Tx, terminal_id: str) -> dict[str, Any]:
    row = tx.one(
        "SELECT t.terminal_id, t.role, t.label, t.public_key, t.merchant_id, m.name, m.category, "
        "m.region FROM terminals t LEFT JOIN merchants m ON m.merchant_id = t.merchant_id "
        "WHERE t.terminal_id = ?",
        (terminal_id,),
    )
    if row is None:
        raise NotFound(f"no terminal {terminal_id}")
    return view(tx, row)


def me(tx: Tx, caller: Caller) -> dict[str, Any]:
    return get(tx, caller.terminal_id)


def public_view(row: Row) -> dict[str, Any]:
    """What any party may know of a terminal (see :mod:`.profiles`): id, role, the label its
    owner chose and its key's fingerprint."""
    return {
        "terminal_id": row["terminal_id"],
        "role": row["role"],
        "label": row["label"],
        "public_key_fingerprint": crypto.key_fingerprint(bytes(row["public_key"])).hex(),
    }


def view(tx: Tx, row: Row) -> dict[str, Any]:
    """A terminal as it is shown to itself: :func:`public_view` and its merchant's details."""
    out = public_view(row)
    if row["merchant_id"]:
        out["merchant_id"] = row["merchant_id"]
        out["merchant"] = {
            "name": row["name"],
            "category": row["category"],
            "categories": merchants.categories(tx, row["merchant_id"]),
            "region": row["region"],
        }
    return out
