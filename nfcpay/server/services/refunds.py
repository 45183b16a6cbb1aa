"""Refunds: a merchant gives back all or part of its own approved payment.

Rule (documented in the API contract): a refund reverses the ledger legs, restores the
funding sources, and gives the refunded amount back to each grant's ``remaining_amount``,
split pro rata across the payment's shares — but NOT the use: a one-use grant stays used.
A grant with an allowance also gets it back in the interval its payment counted in, when
that is still the last interval a payment fell in (an earlier interval is over: its
spending no longer limits anything).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nfcpay import crypto
from nfcpay.errors import Conflict, InvalidRequest
from nfcpay.money import format_minor
from nfcpay.server import ledger
from nfcpay.server.runtime import Caller, Runtime
from nfcpay.server.schemas import RefundIn
from nfcpay.server.services import idempotency, payments
from nfcpay.server.services.formats import iso
from nfcpay.server.store import Row, Tx


def allocate(amount: int, shares: Sequence[tuple[int, int]]) -> list[int]:
    """Split ``amount`` across shares given as (charged, already refunded), pro rata to what
    each was charged, never giving a share back more than it has left.

    >>> allocate(100, [(300, 0), (100, 0)])
    [75, 25]
    >>> allocate(1, [(1, 0), (1, 0)])
    [1, 0]
    """
    total = sum(charged for charged, _ in shares)
    room = [charged - refunded for charged, refunded in shares]
    if not 0 < amount <= sum(room):
        raise ValueError(f"cannot allocate {amount} over {room}")
    parts = [
        min(r, amount * charged // total) for r, (charged, _) in zip(room, shares, strict=True)
    ]
    left = amount - sum(parts)
    for i, r in enumerate(room):
        extra = min(left, r - parts[i])
        parts[i] += extra
        left -= extra
    return parts


def refund(
    tx: Tx,
    rt: Runtime,
    caller: Caller,
    payment_id: str,
    body: RefundIn,
    key: str,
    digest: bytes,
) -> tuple[int, dict[str, Any]]:
    """Returns (HTTP status, answer); a replay answers with the first answer's status."""
    merchant_id = payments.require_merchant(caller)
    now = rt.now_us()
    stored = idempotency.claim(tx, merchant_id, key, digest, now)
    if stored is not None:
        return stored.status_code, {**stored.response, "replayed": True}
    payment = payments.load(tx, caller, payment_id, lock=True)
    left = int(payment["amount"]) - int(payment["refunded"])
    amount = left if body.amount is None else body.amount
    currency = payment["currency"]
    if left == 0:
        raise Conflict(f"payment {payment_id} is already fully refunded", code="fully_refunded")
    if amount > left:
        raise InvalidRequest(
            f"only {format_minor(left, currency)} of this payment is left to refund",
            code="over_refundable",
            field="amount",
        )
    shares = payments.load_shares(tx, payment_id)
    parts = allocate(amount, [(int(s["amount"]), int(s["refunded"])) for s in shares])
    _restore(tx, shares, parts, payment)
    refund_id = crypto.new_id("r")
    tx.execute(
        "UPDATE payments SET refunded = refunded + ? WHERE payment_id = ?", (amount, payment_id)
    )
    tx.execute(
        "INSERT INTO refunds (refund_id, payment_id, amount, currency, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (refund_id, payment_id, amount, currency, now),
    )
    legs = [(ledger.merchant_account(merchant_id), -amount)] + [
        (ledger.source_account(s["source_id"]), part)
        for s, part in zip(shares, parts, strict=True)
        if part
    ]
    ledger.post(tx, now, refund_id, currency, legs)
    response = {
        "refund_id": refund_id,
        "payment_id": payment_id,
        "amount": amount,
        "currency": currency,
        "remaining_refundable": left - amount,
        "created_at": iso(now),
        "replayed": False,
    }
    idempotency.complete(tx, merchant_id, key, 201, response)
    return 201, response


def _restore(tx: Tx, shares: Sequence[Row], parts: Sequence[int], payment: Row) -> None:
    """Give each share its part back: grants first, then sources, each locked in id order."""
    payment_id = payment["payment_id"]
    by_grant: dict[str, int] = {}
    by_source: dict[str, int] = {}
    for share, part in zip(shares, parts, strict=True):
        if share["grant_id"]:
            by_grant[share["grant_id"]] = by_grant.get(share["grant_id"], 0) + part
        by_source[share["source_id"]] = by_source.get(share["source_id"], 0) + part
        tx.execute(
            "UPDATE payment_shares SET refunded = refunded + ? WHERE payment_id = ? AND seq = ?",
            (part, payment_id, share["seq"]),
        )
    for grant_id in sorted(by_grant):
        _restore_grant(tx, grant_id, by_grant[grant_id], payment["created_at"])
    for source_id in sorted(by_source):
        kind = tx.scalar(
            f"SELECT kind FROM funding_sources WHERE source_id = ?{tx.for_update}", (source_id,)
        )
        column = "outstanding = outstanding -" if kind == "card" else "balance = balance +"
        tx.execute(
            f"UPDATE funding_sources SET {column} ? WHERE source_id = ?",
            (by_source[source_id], source_id),
        )


def _restore_grant(tx: Tx, grant_id: str, part: int, paid_at: int) -> None:
    """Give ``part`` back to the grant, and to its allowance's interval if the payment (made
    at ``paid_at``) counted in the interval the grant's spending is kept for."""
    row = tx.one(
        f"SELECT interval_start, interval_spent FROM grants WHERE grant_id = ?{tx.for_update}",
        (grant_id,),
    )
    if row is None:
        raise RuntimeError(f"grant {grant_id} of a payment share is missing")
    spent = row["interval_spent"]
    if row["interval_start"] is not None and paid_at >= row["interval_start"]:
        spent = max(0, spent - part)
    tx.execute(
        "UPDATE grants SET remaining_amount = remaining_amount + ?, interval_spent = ? "
        "WHERE grant_id = ?",
        (part, spent, grant_id),
    )
