"""The target terminal: receives grants from user terminals and pays with them at merchants.

Both conversations start with this terminal tapping the waiting side and introducing
itself (see :mod:`nfcpay.terminals.exchange`).

State in the home directory:

``grants/<grant id>.json``
    ``{"grant_id", "record": <GrantRecord JSON, usage-auth revealed>, "received_at",
    "last_known": {"remaining_amount", "remaining_uses", "status", "as_of"}}``
``receipts/<receipt id>.json``
    one per payment attempt: written *before* the means leave this terminal (status
    ``sent``), then ``approved`` / ``declined`` / ``pending`` from the merchant's result,
    or ``unknown`` when the link was lost before the result came. :func:`wallet` settles
    ``sent``/``unknown``/``pending`` receipts from the server's view of the grants.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nfcpay import crypto
from nfcpay.client import PaymentClient
from nfcpay.errors import Declined, LinkLost, TransportError
from nfcpay.money import format_minor
from nfcpay.records import (
    AckRecord,
    ChallengeRecord,
    GrantRecord,
    MeansRecord,
    PresentedGrant,
    ResultRecord,
    decode_one,
)
from nfcpay.records.means import SplitMode
from nfcpay.terminals import bill as group_bill
from nfcpay.terminals import exchange
from nfcpay.terminals.exchange import Status, quiet
from nfcpay.terminals.home import Identity, TerminalHome
from nfcpay.transport.channel import Channel
from nfcpay.transport.reader import Reader

Json = dict[str, Any]
#: Receipt states that the server's view of the grants can still settle.
UNSETTLED = ("sent", "unknown", "pending")


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def receive_grant(
    home: TerminalHome, reader: Reader, *, timeout: float | None = None, status: Status = quiet
) -> Json:
    """Tap the user terminal, receive a grant bound to this terminal and keep it."""
    identity = home.require_role("target")
    with exchange.tap(
        reader,
        exchange.GIVE_SERVICE,
        offer=False,
        timeout=timeout,
        status=status,
        what="receive a grant",
    ) as channel:
        exchange.send(channel, exchange.hello_from(home, identity))
        grant = exchange.receive(channel, GrantRecord, exchange.RESULT_TIMEOUT)
        if grant.allowed_terminal != identity.terminal_id:
            message = (
                f"grant {grant.grant_id} is for {grant.allowed_terminal}, not for this terminal"
            )
            exchange.refuse(channel, "terminal_not_allowed", message, ref=grant.grant_id)
            raise Declined(message, code="terminal_not_allowed")
        entry = held_entry(grant)
        home.put("grants", grant.grant_id, entry)
        exchange.send(channel, AckRecord(accepted=True, ref=grant.grant_id))
    return entry


def receive_grant_from_tag(
    home: TerminalHome, reader: Reader, *, timeout: float | None = None, status: Status = quiet
) -> Json:
    """Read a grant bound to this terminal from the next tag, keep it, and wipe the tag.

    A grant for another terminal stays on the tag (it is theirs) and is refused here.
    """
    from nfcpay.transport.tag import take_tag

    identity = home.require_role("target")

    def keep(message: bytes) -> Json:
        grant = decode_one(message, GrantRecord)
        if grant.allowed_terminal != identity.terminal_id:
            raise Declined(
                f"the grant on this tag is for {grant.allowed_terminal}, not for this terminal",
                code="terminal_not_allowed",
            )
        entry = held_entry(grant)
        home.put("grants", grant.grant_id, entry)
        return entry

    status("Hold the tag with the grant to the reader")
    return take_tag(reader, keep, timeout=timeout)


def held_entry(grant: GrantRecord) -> Json:
    """What this terminal keeps of a received grant."""
    return {
        "grant_id": grant.grant_id,
        "record": grant.to_json(reveal=True),
        "received_at": now_iso(),
        "last_known": {
            "remaining_amount": grant.remaining_amount,
            "remaining_uses": grant.max_uses,
            "status": "active",
            "as_of": now_iso(),
        },
    }


@dataclass(frozen=True)
class Paid:
    """How a payment went, as this terminal saw it."""

    receipt: Json

    @property
    def status(self) -> str:
        return str(self.receipt["status"])

    def to_json(self) -> Json:
        return {"ok": self.status == "approved", **self.receipt}


def pay(
    home: TerminalHome,
    reader: Reader,
    *,
    grant_ids: Sequence[str] = (),
    bill_id: str | None = None,
    own_source_id: str | None = None,
    timeout: float | None = None,
    status: Status = quiet,
) -> Paid:
    """Tap the merchant, answer its challenge with signed payment means, get the result.

    With ``grant_ids`` exactly those grants are presented (the server decides); otherwise
    the held grants that fit the challenge are chosen here. With ``bill_id`` the group
    bill collected here is paid: every member's grant with its share, and the rest of the
    bill from ``own_source_id`` (see :func:`nfcpay.terminals.bill.means_plan`).
    """
    identity = home.require_role("target")
    with exchange.tap(
        reader, exchange.PAY_SERVICE, offer=False, timeout=timeout, status=status, what="pay"
    ) as channel:
        exchange.send(channel, exchange.hello_from(home, identity))
        challenge = exchange.receive(channel, ChallengeRecord)
        status(f"Merchant {challenge.merchant_id} asks for {_money(challenge)}.")
        if bill_id is None:
            shares = _shares_or_refuse(channel, home, challenge, grant_ids)
            means = sign_means(home, identity, challenge, shares)
        else:
            shares, means = _bill_means_or_refuse(
                channel, home, identity, challenge, bill_id, own_source_id
            )
        receipt = _new_receipt(challenge, shares, means)
        home.put("receipts", receipt["receipt_id"], receipt)
        try:
            exchange.send(channel, means)
            result = exchange.receive(channel, ResultRecord, exchange.RESULT_TIMEOUT)
        except TransportError as exc:
            receipt.update(status="unknown", message=exc.message, updated_at=now_iso())
            home.put("receipts", receipt["receipt_id"], receipt)
            raise LinkLost(
                f"the link to the merchant was lost before its result arrived ({exc.message}); "
                f"`nfcpay target wallet` will tell whether receipt {receipt['receipt_id']} "
                "was charged"
            ) from exc
    _record_result(home, receipt, result)
    if bill_id is not None and receipt["status"] == "approved":
        group_bill.mark_paid(home, bill_id, receipt)
    return Paid(receipt)


def _bill_means_or_refuse(
    channel: Channel,
    home: TerminalHome,
    identity: Identity,
    challenge: ChallengeRecord,
    bill_id: str,
    own_source_id: str | None,
) -> tuple[list[Share], MeansRecord]:
    try:
        bill = group_bill.load(home, bill_id)
        members, own = group_bill.means_plan(bill, challenge, own_source_id)
    except Declined as exc:
        exchange.refuse(channel, exc.code, exc.message)
        raise
    shares = [(home.get("grants", grant_id), amount) for grant_id, amount in members]
    means = sign_means(
        home,
        identity,
        challenge,
        shares,
        own_source_id=own_source_id if own else None,
        own_amount=own,
        bill_id=bill_id,
        split_mode=SplitMode(bill["mode"]),
    )
    return shares, means


def _money(challenge: ChallengeRecord, minor: int | None = None) -> str:
    return format_minor(challenge.amount if minor is None else minor, challenge.currency)


Share = tuple[Json, int]


def _shares_or_refuse(
    channel: Channel, home: TerminalHome, challenge: ChallengeRecord, grant_ids: Sequence[str]
) -> list[Share]:
    try:
        return choose_shares(home, challenge, grant_ids)
    except Declined as exc:
        exchange.refuse(channel, exc.code, exc.message)
        raise


def choose_shares(
    home: TerminalHome, challenge: ChallengeRecord, grant_ids: Sequence[str] = ()
) -> list[Share]:
    """Which held grants pay how much of ``challenge`` (each share ≥ 1 minor unit)."""
    if grant_ids:
        entries = [home.get("grants", grant_id) for grant_id in grant_ids]
    else:
        entries = [e for e in home.items("grants") if usable(e, challenge)]
        entries.sort(key=lambda e: e["last_known"]["remaining_amount"])
    shares: list[Share] = []
    left = challenge.amount
    for index, entry in enumerate(entries):
        last = index == len(entries) - 1
        share = left if last and grant_ids else min(left, _capacity(entry))
        if share > 0:
            shares.append((entry, share))
            left -= share
    if left > 0 or not shares:
        held = challenge.amount - left
        raise Declined(
            f"the grants held here cover {_money(challenge, held)} of {_money(challenge)}",
            code="no_usable_grant",
        )
    return shares


def _capacity(entry: Json) -> int:
    record = entry["record"]
    remaining = int(entry["last_known"]["remaining_amount"])
    per_use = record.get("per_use_cap")
    return min(remaining, per_use) if per_use else remaining


def usable(entry: Json, challenge: ChallengeRecord) -> bool:
    """Whether a held grant may pay at this merchant, as far as this terminal knows."""
    record, known = entry["record"], entry["last_known"]
    valid_until = record.get("valid_until")
    return (
        known["status"] == "active"
        and known["remaining_uses"] > 0
        and known["remaining_amount"] > 0
        and record["currency"] == challenge.currency
        and record.get("bill_id") == challenge.bill_id
        and (not valid_until or datetime.fromisoformat(valid_until) > datetime.now(UTC))
        and (not record.get("merchants") or challenge.merchant_id in record["merchants"])
        and (not record.get("purposes") or challenge.purpose in record["purposes"])
    )


def sign_means(
    home: TerminalHome,
    identity: Identity,
    challenge: ChallengeRecord,
    shares: Sequence[Share],
    *,
    own_source_id: str | None = None,
    own_amount: int = 0,
    bill_id: str | None = None,
    split_mode: SplitMode = SplitMode.EXACT,
) -> MeansRecord:
    """Payment means for ``challenge``, signed with this terminal's key (a group bill's
    means also carry the collector's own share, the bill and its split mode)."""
    presented = tuple(
        PresentedGrant(
            grant_id=entry["grant_id"],
            amount=share,
            usage_auth=GrantRecord.from_json(entry["record"]).usage_auth,
        )
        for entry, share in shares
    )
    unsigned = MeansRecord(
        presenting_terminal=identity.terminal_id,
        currency=challenge.currency,
        grants=presented,
        own_source_id=own_source_id,
        own_amount=own_amount,
        signature=bytes(64),
        bill_id=bill_id,
        split_mode=split_mode,
    )
    signature = home.private_key().sign(presentation_message(challenge, unsigned))
    return dataclasses.replace(unsigned, signature=signature)


def presentation_message(challenge: ChallengeRecord, means: MeansRecord) -> bytes:
    """The bytes the presenting terminal signs: ``means`` answering ``challenge`` (the
    server checks the same message, built from the merchant's request)."""
    return crypto.presentation_message(
        challenge=challenge.nonce,
        merchant_id=challenge.merchant_id,
        amount=challenge.amount,
        currency=challenge.currency,
        presenting_terminal=means.presenting_terminal,
        grants=[crypto.GrantShare(g.grant_id, g.amount) for g in means.grants],
        own_source_id=means.own_source_id,
        own_amount=means.own_amount,
        bill_id=means.bill_id,
        split_mode=means.split_mode.value,
    )


def _new_receipt(
    challenge: ChallengeRecord, shares: Sequence[Share], means: MeansRecord | None = None
) -> Json:
    return {
        "receipt_id": crypto.new_id("rc"),
        "status": "sent",
        "merchant_id": challenge.merchant_id,
        "amount": challenge.amount,
        "currency": challenge.currency,
        "purpose": challenge.purpose,
        "grants": [
            {
                "grant_id": entry["grant_id"],
                "amount": share,
                "remaining_uses_before": entry["last_known"]["remaining_uses"],
                "remaining_amount_before": entry["last_known"]["remaining_amount"],
            }
            for entry, share in shares
        ],
        "bill_id": means.bill_id if means else None,
        "own_source_id": means.own_source_id if means else None,
        "own_amount": means.own_amount if means else 0,
        "payment_id": None,
        "approval_code": None,
        "decline_code": None,
        "message": "",
        "created_at": now_iso(),
        "updated_at": now_iso(),
    }


def _record_result(home: TerminalHome, receipt: Json, result: ResultRecord) -> None:
    if result.approved:
        state = "approved"
    elif result.decline_code == "pending":
        state = "pending"
    else:
        state = "declined"
    receipt.update(
        status=state,
        payment_id=result.payment_id,
        approval_code=result.approval_code,
        decline_code=None if state == "pending" else result.decline_code,
        message=result.message,
        updated_at=now_iso(),
    )
    home.put("receipts", receipt["receipt_id"], receipt)
    if result.approved:
        _after_charge(home, receipt)
        for share in receipt["grants"]:
            entry = home.get("grants", share["grant_id"])
            known = entry["last_known"]
            known["remaining_amount"] = max(0, known["remaining_amount"] - share["amount"])
            known["remaining_uses"] = max(0, known["remaining_uses"] - 1)
            if known["remaining_uses"] == 0 or known["remaining_amount"] == 0:
                known["status"] = "exhausted"
            known["as_of"] = now_iso()
            home.put("grants", share["grant_id"], entry)


@dataclass(frozen=True)
class Wallet:
    grants: list[Json]
    receipts: list[Json]
    refreshed: bool

    def to_json(self) -> Json:
        return {
            "ok": True,
            "refreshed": self.refreshed,
            "grants": [wallet_view(entry) for entry in self.grants],
            "receipts": self.receipts,
        }


def wallet_view(entry: Json) -> Json:
    """A held grant without its usage-auth, for display and --json."""
    record = {k: v for k, v in entry["record"].items() if k != "usage_auth"}
    return {**record, **entry["last_known"], "received_at": entry["received_at"]}


def wallet(home: TerminalHome, client: PaymentClient | None = None) -> Wallet:
    """Held grants and receipts; with a ``client``, refreshed from the server first."""
    home.require_role("target")
    if client is not None:
        refresh(home, client)
    return Wallet(list(home.items("grants")), list(home.items("receipts")), client is not None)


def refresh(home: TerminalHome, client: PaymentClient) -> None:
    """Update what is known of each held grant, then settle receipts it answers."""
    before = {e["grant_id"]: e for e in home.items("grants")}
    for view in client.list_grants():
        entry = before.get(view["grant_id"])
        if entry is None:
            continue
        entry["last_known"] = {
            "remaining_amount": view["remaining_amount"],
            "remaining_uses": view["remaining_uses"],
            "status": view["status"],
            "as_of": now_iso(),
        }
        home.put("grants", entry["grant_id"], entry)
    for receipt in home.items("receipts"):
        if receipt["status"] in UNSETTLED:
            _settle(home, receipt)


def _settle(home: TerminalHome, receipt: Json) -> None:
    """Charged if every grant of the receipt lost a use and its share since it was sent."""
    charged = True
    for share in receipt["grants"]:
        known = home.get("grants", share["grant_id"])["last_known"]
        used = known["remaining_uses"] <= share["remaining_uses_before"] - 1
        spent = known["remaining_amount"] <= share["remaining_amount_before"] - share["amount"]
        charged = charged and used and spent
    if not charged and receipt["status"] == "pending":
        return
    receipt.update(
        status="approved" if charged else "not_charged",
        message="settled from the server's view of the grants",
        updated_at=now_iso(),
    )
    home.put("receipts", receipt["receipt_id"], receipt)
    if charged:
        _after_charge(home, receipt)
        if receipt.get("bill_id"):
            group_bill.mark_paid(home, receipt["bill_id"], receipt)


def _after_charge(home: TerminalHome, charged: Json) -> None:
    """Move the baseline of every other unsettled receipt past ``charged``.

    An unsettled receipt was made from a view of its grants that did not include this
    charge (a tap retried after a lost result, before ``target wallet``); without this, the
    use and amount the retry spent would later be read as the lost tap's charge too.
    """
    spent = {share["grant_id"]: share["amount"] for share in charged["grants"]}
    for other in home.items("receipts"):
        if other["receipt_id"] == charged["receipt_id"] or other["status"] not in UNSETTLED:
            continue
        shares = [share for share in other["grants"] if share["grant_id"] in spent]
        for share in shares:
            share["remaining_uses_before"] -= 1
            share["remaining_amount_before"] -= spent[share["grant_id"]]
        if shares:
            home.put("receipts", other["receipt_id"], other)
