"""Funding sources ("real payment info"): cards with a credit limit, wallets and bank accounts
with a balance. The bundled server is a sandbox issuer, so registering a source states its
limit or balance. Card numbers are encrypted at rest and only ever shown masked."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nfcpay import crypto
from nfcpay.errors import Conflict, Forbidden, InvalidRequest, NotFound
from nfcpay.server import ledger
from nfcpay.server.runtime import Caller, Runtime
from nfcpay.server.schemas import FundingSourceIn
from nfcpay.server.store import Row, Tx

OWNER_ROLES = frozenset({"user", "target"})

_COLUMNS = (
    "source_id, owner_terminal, kind, currency, status, card_masked, expiry, credit_limit, "
    "outstanding, balance"
)


def _require_owner_role(caller: Caller) -> None:
    if caller.role not in OWNER_ROLES:
        raise Forbidden("only user and target terminals hold funding sources")


def add(tx: Tx, rt: Runtime, caller: Caller, body: FundingSourceIn) -> dict[str, Any]:
    _require_owner_role(caller)
    source_id = crypto.new_id("src")
    now = rt.now_us()
    if body.kind == "card":
        number, expiry, limit = _card_fields(body, now)
        tx.execute(
            "INSERT INTO funding_sources (source_id, owner_terminal, kind, currency, status, "
            "card_number_enc, card_masked, expiry, credit_limit, outstanding, created_at) "
            "VALUES (?, ?, 'card', ?, 'active', ?, ?, ?, ?, 0, ?)",
            (
                source_id,
                caller.terminal_id,
                body.currency,
                rt.cipher.encrypt(number, source_id),
                crypto.mask_card_number(number),
                expiry,
                limit,
                now,
            ),
        )
    else:
        if body.balance is None:
            raise InvalidRequest(f"a {body.kind} needs a balance", field="balance")
        if body.number or body.expiry or body.limit is not None:
            raise InvalidRequest(f"a {body.kind} takes only a balance", field="kind")
        tx.execute(
            "INSERT INTO funding_sources (source_id, owner_terminal, kind, currency, status, "
            "balance, created_at) VALUES (?, ?, ?, ?, 'active', ?, ?)",
            (source_id, caller.terminal_id, body.kind, body.currency, body.balance, now),
        )
        ledger.open_balance(tx, now, source_id, body.currency, body.balance)
    return view(_load(tx, caller, source_id), rt.now_us())


def _card_fields(body: FundingSourceIn, now_us: int) -> tuple[str, str, int]:
    if body.number is None:
        raise InvalidRequest("a card needs its number", field="number")
    if not crypto.luhn_valid(body.number):
        raise InvalidRequest("card number fails the Luhn check", field="number")
    if crypto.is_virtual_card_number(body.number):
        raise InvalidRequest(
            "that number is in nfcpay's virtual card range, not a real card", field="number"
        )
    if body.expiry is None:
        raise InvalidRequest("a card needs its expiry MM/YY", field="expiry")
    if card_expired(body.expiry, now_us):
        raise InvalidRequest(
            f"the card expired at the end of {body.expiry}: add a card that is still valid",
            field="expiry",
        )
    if body.limit is None:
        raise InvalidRequest("a card needs its credit limit", field="limit")
    if body.balance is not None:
        raise InvalidRequest("a card has a limit, not a balance", field="balance")
    return body.number, body.expiry, body.limit


def list_own(tx: Tx, rt: Runtime, caller: Caller) -> dict[str, Any]:
    rows = tx.all(
        f"SELECT {_COLUMNS} FROM funding_sources WHERE owner_terminal = ? ORDER BY created_at",
        (caller.terminal_id,),
    )
    now = rt.now_us()
    return {"sources": [view(row, now) for row in rows]}


def set_status(tx: Tx, rt: Runtime, caller: Caller, source_id: str, status: str) -> dict[str, Any]:
    row = _load(tx, caller, source_id, lock=True)
    if row["status"] == "closed" and status != "closed":
        raise Conflict("a closed funding source cannot be reopened", code="source_closed")
    tx.execute("UPDATE funding_sources SET status = ? WHERE source_id = ?", (status, source_id))
    return view(_load(tx, caller, source_id), rt.now_us())


def _load(tx: Tx, caller: Caller, source_id: str, *, lock: bool = False) -> Row:
    row = tx.one(
        f"SELECT {_COLUMNS} FROM funding_sources WHERE source_id = ?"
        + (tx.for_update if lock else ""),
        (source_id,),
    )
    if row is None or row["owner_terminal"] != caller.terminal_id:
        raise NotFound(f"no funding source {source_id} of yours", code="source_not_found")
    return row


def load_owned(tx: Tx, caller: Caller, source_id: str) -> Row:
    """The caller's own source, or NotFound (other terminals' sources are not revealed)."""
    return _load(tx, caller, source_id)


def card_expired(expiry: str | None, now_us: int) -> bool:
    """A card is valid through the last day of its MM/YY expiry month."""
    if expiry is None:
        return False
    month, year = int(expiry[:2]), 2000 + int(expiry[3:])
    now = datetime.fromtimestamp(now_us / 1_000_000, UTC)
    return (now.year, now.month) > (year, month)


def available(row: Row) -> int:
    if row["kind"] == "card":
        return int(row["credit_limit"]) - int(row["outstanding"])
    return int(row["balance"])


def view(row: Row, now_us: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "source_id": row["source_id"],
        "kind": row["kind"],
        "currency": row["currency"],
        "status": row["status"],
        "masked": row["card_masked"],
        "available": available(row),
    }
    if row["kind"] == "card":
        out |= {
            "expiry": row["expiry"],
            "expired": card_expired(row["expiry"], now_us),
            "limit": row["credit_limit"],
            "outstanding": row["outstanding"],
        }
    else:
        out["balance"] = row["balance"]
    return out
