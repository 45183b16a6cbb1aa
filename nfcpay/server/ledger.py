"""Double-entry ledger: every movement of money is a set of legs that sums to zero.

Accounts are named ``source:<source id>`` (a funding source: a wallet's account carries its
balance, a card's carries minus its outstanding amount), ``merchant:<merchant id>`` (the
merchant's settlement account) and ``issuer:sandbox`` (where opening balances come from).
A charge debits the funding side and credits the merchant; a refund posts the reverse.

:func:`audit` re-derives every stored figure from the ledger and returns the discrepancies as
a list (empty when the books are sound) instead of raising, so a check reports them all.
"""

from __future__ import annotations

from collections.abc import Sequence

from nfcpay.server.store import Tx

ISSUER_ACCOUNT = "issuer:sandbox"

Leg = tuple[str, int]


def source_account(source_id: str) -> str:
    return f"source:{source_id}"


def merchant_account(merchant_id: str) -> str:
    return f"merchant:{merchant_id}"


def post(tx: Tx, now_us: int, txn_id: str, currency: str, legs: Sequence[Leg]) -> None:
    """Write the legs of one transaction. Legs must be non-zero and sum to zero."""
    if len(legs) < 2 or sum(amount for _, amount in legs) != 0:
        raise ValueError(f"ledger transaction {txn_id} does not balance: {legs}")
    if any(amount == 0 for _, amount in legs):
        raise ValueError(f"ledger transaction {txn_id} has a zero leg")
    tx.insert(
        "ledger_entries (txn_id, leg, account, amount, currency, created_at)",
        [
            (txn_id, i, account, amount, currency, now_us)
            for i, (account, amount) in enumerate(legs)
        ],
    )


def open_balance(tx: Tx, now_us: int, source_id: str, currency: str, balance: int) -> None:
    """The opening balance of a sandbox wallet or bank account comes from the issuer."""
    if balance:
        legs = [(ISSUER_ACCOUNT, -balance), (source_account(source_id), balance)]
        post(tx, now_us, f"open:{source_id}", currency, legs)


def balance(tx: Tx, account: str, currency: str) -> int:
    total = tx.scalar(
        "SELECT COALESCE(SUM(amount), 0) AS total FROM ledger_entries "
        "WHERE account = ? AND currency = ?",
        (account, currency),
    )
    return int(total or 0)


def audit(tx: Tx) -> list[str]:
    """Every inconsistency between the ledger, the funding sources, the grants and payments."""
    problems: list[str] = []
    for row in tx.all(
        "SELECT currency, SUM(amount) AS total FROM ledger_entries GROUP BY currency"
    ):
        if int(row["total"]) != 0:
            problems.append(f"ledger entries in {row['currency']} sum to {row['total']}, not 0")
    for row in tx.all(
        "SELECT s.source_id, s.kind, s.balance, s.outstanding, COALESCE(SUM(e.amount), 0) AS led "
        "FROM funding_sources s LEFT JOIN ledger_entries e ON e.account = "
        "('source:' || s.source_id) GROUP BY s.source_id, s.kind, s.balance, s.outstanding"
    ):
        expected = int(row["balance"]) if row["kind"] != "card" else -int(row["outstanding"])
        if int(row["led"]) != expected:
            problems.append(
                f"source {row['source_id']}: ledger says {row['led']}, the source {expected}"
            )
    for row in tx.all(
        "SELECT g.grant_id, g.amount_cap, g.max_uses, g.remaining_amount, g.remaining_uses, "
        "COALESCE(SUM(p.amount - p.refunded), 0) AS spent, COUNT(p.payment_id) AS uses "
        "FROM grants g LEFT JOIN payment_shares p ON p.grant_id = g.grant_id "
        "GROUP BY g.grant_id, g.amount_cap, g.max_uses, g.remaining_amount, g.remaining_uses"
    ):
        if int(row["remaining_amount"]) != int(row["amount_cap"]) - int(row["spent"]):
            problems.append(f"grant {row['grant_id']}: remaining amount disagrees with payments")
        if int(row["remaining_uses"]) != int(row["max_uses"]) - int(row["uses"]):
            problems.append(f"grant {row['grant_id']}: remaining uses disagree with payments")
    for row in tx.all(
        "SELECT p.payment_id, p.amount, p.refunded, SUM(s.amount) AS shares, "
        "SUM(s.refunded) AS share_refunds FROM payments p "
        "JOIN payment_shares s ON s.payment_id = p.payment_id "
        "GROUP BY p.payment_id, p.amount, p.refunded"
    ):
        if int(row["shares"]) != int(row["amount"]) or int(row["share_refunds"]) != int(
            row["refunded"]
        ):
            problems.append(f"payment {row['payment_id']}: shares do not add up to the payment")
    return problems
