"""The collector's bill: its split, who has joined with which grant, and whether it is paid.

The server mints the bill's id when the collector opens it (:func:`open_bill`) and from then
on takes a payment for the bill only from the collector's terminal. Kept in the collector's
home as ``bills/<bill id>.json``::

    {"bill_id", "currency", "total", "mode": "exact"|"remainder", "collector_terminal",
     "collector_share", "created_at", "expires_at", "status": "collecting"|"ready"|"paid",
     "slots": [{"slot", "amount", "status": "open"|"joined", "member", "grant_id",
                "joined_at"}],
     "dropped": [{"member", "grant_id", "amount", "dropped_at"}],
     "payment": null | {"payment_id", "approval_code", "receipt_id"}}

A member's grant itself is held like any other grant, in ``grants/<grant id>.json`` (see
:mod:`nfcpay.terminals.held`), so the wallet shows it and receipts settle it; being bound
to the bill, it is never chosen for a payment outside the bill.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from nfcpay.client import PaymentClient
from nfcpay.errors import ConfigError, Declined, ServerUnavailable
from nfcpay.money import format_minor
from nfcpay.records import ChallengeRecord, GrantRecord, SplitRequestRecord
from nfcpay.split import Split
from nfcpay.terminals.home import Identity, TerminalHome
from nfcpay.terminals.receipts import Receipt

Json = dict[str, Any]
MODES = ("exact", "remainder")
BILLS = "bills"


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def open_bill(
    home: TerminalHome,
    identity: Identity,
    client: PaymentClient,
    split: Split,
    *,
    mode: str,
    expires_in: timedelta,
) -> Json:
    """Open a bill for ``split`` with the payment server (which picks its id and from then
    on takes a payment for it only from this terminal) and keep it here."""
    _check_mode(mode)
    try:
        opened = client.open_bill(total=split.total, currency=identity.currency, mode=mode)
    except ServerUnavailable as exc:
        raise ServerUnavailable(
            f"a bill is opened with the payment server, and it is out of reach: {exc.message}",
            code=exc.code,
            status=exc.status,
        ) from exc
    return new_bill(
        home, identity, split, bill_id=opened["bill_id"], mode=mode, expires_in=expires_in
    )


def new_bill(
    home: TerminalHome,
    identity: Identity,
    split: Split,
    *,
    bill_id: str,
    mode: str,
    expires_in: timedelta,
) -> Json:
    """Store bill ``bill_id`` (opened with the server) for ``split``, collected by this
    (target) terminal."""
    _check_mode(mode)
    now = _now()
    bill: Json = {
        "bill_id": bill_id,
        "currency": identity.currency,
        "total": split.total,
        "mode": mode,
        "collector_terminal": identity.terminal_id,
        "collector_share": split.collector_share,
        "created_at": now.isoformat(),
        "expires_at": (now + expires_in).isoformat(),
        "status": "collecting",
        "slots": [
            {
                "slot": i + 1,
                "amount": amount,
                "status": "open",
                "member": None,
                "grant_id": None,
                "joined_at": None,
            }
            for i, amount in enumerate(split.member_shares)
        ],
        "dropped": [],
        "payment": None,
    }
    refresh_status(bill)
    save(home, bill)
    return bill


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"unknown split mode {mode!r}: use exact or remainder")


def load(home: TerminalHome, bill_id: str) -> Json:
    return home.get(BILLS, bill_id)


def save(home: TerminalHome, bill: Json) -> None:
    home.put(BILLS, bill["bill_id"], bill)


def open_slots(bill: Json) -> list[Json]:
    return [slot for slot in bill["slots"] if slot["status"] == "open"]


def joined(bill: Json) -> list[Json]:
    return [slot for slot in bill["slots"] if slot["status"] == "joined"]


def split_request(bill: Json, slot: Json) -> SplitRequestRecord:
    """What the collector sends the member who takes ``slot``."""
    return SplitRequestRecord(
        bill_id=bill["bill_id"],
        collector_terminal=bill["collector_terminal"],
        currency=bill["currency"],
        amount=slot["amount"],
        expires_at=datetime.fromisoformat(bill["expires_at"]),
    )


def check_member_grant(bill: Json, slot: Json, member: str, grant: GrantRecord) -> None:
    """Refuse a grant that does not pay exactly this slot of this bill, once, here."""
    wrong = []
    if grant.issuing_terminal != member:
        wrong.append(f"issued by {grant.issuing_terminal}, not by the member {member}")
    if grant.allowed_terminal != bill["collector_terminal"]:
        wrong.append(f"bound to {grant.allowed_terminal}, not to this collector")
    if grant.bill_id != bill["bill_id"]:
        wrong.append(f"for bill {grant.bill_id}, not {bill['bill_id']}")
    if grant.currency != bill["currency"]:
        wrong.append(f"in {grant.currency}, not {bill['currency']}")
    if grant.amount_cap != slot["amount"] or grant.remaining_amount != slot["amount"]:
        wrong.append(f"capped at {grant.amount_cap}, not at the share {slot['amount']}")
    if grant.max_uses != 1:
        wrong.append(f"good for {grant.max_uses} uses, not one")
    if wrong:
        raise Declined(f"grant {grant.grant_id} is " + "; ".join(wrong), code="grant_mismatch")


def record_join(bill: Json, slot: Json, member: str, grant_id: str) -> None:
    slot.update(status="joined", member=member, grant_id=grant_id, joined_at=_now().isoformat())
    refresh_status(bill)


def drop(bill: Json, member: str) -> Json:
    """Reopen the slot ``member`` holds (its grant is no longer presented); returns the slot."""
    _require_unpaid(bill)
    for slot in joined(bill):
        if slot["member"] == member:
            bill["dropped"].append(
                {
                    "member": member,
                    "grant_id": slot["grant_id"],
                    "amount": slot["amount"],
                    "dropped_at": _now().isoformat(),
                }
            )
            slot.update(status="open", member=None, grant_id=None, joined_at=None)
            refresh_status(bill)
            return slot
    raise ConfigError(f"terminal {member} has not joined bill {bill['bill_id']}")


def slot_of(bill: Json, member: str) -> Json | None:
    return next((s for s in joined(bill) if s["member"] == member), None)


def means_plan(
    bill: Json, challenge: ChallengeRecord, own_source_id: str | None
) -> tuple[list[tuple[str, int]], int]:
    """The (grant id, share) of every member and the collector's own share for ``challenge``.

    Exact mode: the merchant must charge the bill total. Remainder mode: the collector's
    own share is whatever the members' shares leave of the charged amount.
    """
    _require_unpaid(bill)
    money = bill["currency"]
    if challenge.currency != bill["currency"]:
        raise Declined(f"the merchant charges in {challenge.currency}, the bill is in {money}")
    missing = open_slots(bill)
    if missing:
        raise Declined(
            f"bill {bill['bill_id']} still waits for {len(missing)} member(s): "
            + ", ".join(format_minor(s["amount"], money) for s in missing)
            + " (run `nfcpay group collect --bill ID`, or drop them)",
            code="bill_incomplete",
        )
    members = [(s["grant_id"], s["amount"]) for s in joined(bill)]
    granted = sum(amount for _, amount in members)
    if bill["mode"] == "exact":
        if challenge.fixed_amount != bill["total"]:
            raise Declined(
                f"the merchant charges {format_minor(challenge.fixed_amount, money)}, the bill's "
                f"total is {format_minor(bill['total'], money)}",
                code="amount_mismatch",
            )
        own = bill["total"] - granted
    else:
        own = challenge.fixed_amount - granted
        if own < 0:
            raise Declined(
                f"the members' shares exceed the charged amount by {format_minor(-own, money)}",
                code="shares_do_not_add_up",
            )
    if own > 0 and own_source_id is None:
        raise Declined(
            f"{format_minor(own, money)} is the collector's own share: pass --own-source",
            code="no_own_source",
        )
    return members, own


def mark_paid(home: TerminalHome, bill_id: str, receipt: Receipt) -> None:
    """The bill was paid with the approved ``receipt``."""
    bill = load(home, bill_id)
    bill["status"] = "paid"
    bill["payment"] = {
        "payment_id": receipt.payment_id,
        "approval_code": receipt.approval_code,
        "receipt_id": receipt.receipt_id,
    }
    save(home, bill)


def progress(bill: Json) -> str:
    """One line: who has joined, what is still missing."""
    money = bill["currency"]
    done = joined(bill)
    parts = [
        f"bill {bill['bill_id']}: {len(done)}/{len(bill['slots'])} joined "
        f"({format_minor(sum(s['amount'] for s in done), money)} of "
        f"{format_minor(bill['total'], money)})"
    ]
    missing = open_slots(bill)
    if missing:
        parts.append("missing " + ", ".join(format_minor(s["amount"], money) for s in missing))
    return "; ".join(parts)


def refresh_status(bill: Json) -> None:
    """collecting while a slot is open, then ready (paid stays paid)."""
    if bill["status"] != "paid":
        bill["status"] = "collecting" if open_slots(bill) else "ready"


def _require_unpaid(bill: Json) -> None:
    if bill["status"] == "paid":
        raise Declined(f"bill {bill['bill_id']} is already paid", code="bill_already_paid")
