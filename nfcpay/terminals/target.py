"""The target terminal's two conversations: receive a grant, and pay a merchant with grants.

Both start with this terminal tapping the waiting side and introducing itself (see
:mod:`nfcpay.terminals.exchange`); :func:`sign_means` signs what a payment presents.

What the target keeps lives beside this module: the held grants and how a payment is split
among them in :mod:`nfcpay.terminals.held`, the receipt of each payment attempt and its
states in :mod:`nfcpay.terminals.receipts`, and the wallet (refreshing both from the server)
in :mod:`nfcpay.terminals.wallet`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nfcpay.errors import AmountRefused, Declined, DecodeError, LinkLost, TransportError
from nfcpay.money import format_minor
from nfcpay.records import (
    AckRecord,
    ChallengeRecord,
    GrantRecord,
    MeansRecord,
    PresentedGrant,
    ResultRecord,
    decode_one,
    presentation,
)
from nfcpay.records.base import UNSUPPORTED_VERSION
from nfcpay.records.means import SplitMode
from nfcpay.terminals import bill as group_bill
from nfcpay.terminals import exchange
from nfcpay.terminals.exchange import Status, quiet
from nfcpay.terminals.held import HeldGrant, HeldGrants, Share, choose_shares, held_entry
from nfcpay.terminals.home import Identity, TerminalHome
from nfcpay.terminals.open_amount import asked, price
from nfcpay.terminals.parties import Parties
from nfcpay.terminals.receipts import Receipt, Receipts, ReceiptStatus, record_result
from nfcpay.transport.channel import Channel
from nfcpay.transport.reader import Reader

Json = dict[str, Any]

#: ``choose_shares`` and ``held_entry`` live in :mod:`nfcpay.terminals.held`; they are
#: re-exported for callers that reach them as ``target.choose_shares``/``target.held_entry``.
__all__ = [
    "Paid",
    "choose_shares",
    "held_entry",
    "pay",
    "receive_grant",
    "receive_grant_from_tag",
    "sign_means",
]


def receive_grant(
    home: TerminalHome, reader: Reader, *, timeout: float | None = None, status: Status = quiet
) -> HeldGrant:
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
        held = HeldGrant.received(grant)
        HeldGrants(home).put(held)
        exchange.send(channel, AckRecord(accepted=True, ref=grant.grant_id))
    return held


def receive_grant_from_tag(
    home: TerminalHome, reader: Reader, *, timeout: float | None = None, status: Status = quiet
) -> HeldGrant:
    """Read a grant bound to this terminal from the next tag, keep it, and wipe the tag.

    A grant for another terminal stays on the tag (it is theirs) and is refused here.
    """
    from nfcpay.transport.tag import take_tag

    identity = home.require_role("target")

    def keep(message: bytes) -> HeldGrant:
        grant = decode_one(message, GrantRecord)
        if grant.allowed_terminal != identity.terminal_id:
            raise Declined(
                f"the grant on this tag is for {grant.allowed_terminal}, not for this terminal",
                code="terminal_not_allowed",
            )
        held = HeldGrant.received(grant)
        HeldGrants(home).put(held)
        return held

    status("Hold the tag with the grant to the reader")
    return take_tag(reader, keep, timeout=timeout)


@dataclass(frozen=True)
class Paid:
    """How a payment went, as this terminal saw it."""

    receipt: Receipt

    @property
    def status(self) -> ReceiptStatus:
        return self.receipt.status

    def to_json(self) -> Json:
        return {"ok": self.status is ReceiptStatus.APPROVED, **self.receipt.to_json()}


def pay(
    home: TerminalHome,
    reader: Reader,
    *,
    grant_ids: Sequence[str] = (),
    bill_id: str | None = None,
    own_source_id: str | None = None,
    amount: int | None = None,
    merchant: str | None = None,
    timeout: float | None = None,
    status: Status = quiet,
) -> Paid:
    """Tap the merchant, answer its challenge with signed payment means, get the result.

    A merchant's open challenge is paid with ``amount`` (minor units), refused over the
    merchant's maximum before anything is signed; with no ``amount`` it is refused with
    :class:`~nfcpay.terminals.open_amount.AmountNeeded`, which ends the tap so that the
    person can type the amount and tap again with it (and ``merchant``, the one it was typed
    for). An ``amount`` for a challenge that asks another is refused (see
    :func:`nfcpay.terminals.open_amount.price`).

    With ``grant_ids`` exactly those grants are presented (the server decides); otherwise
    the held grants that fit the challenge are chosen here. With ``bill_id`` the group
    bill collected here is paid: every member's grant with its share, and the rest of the
    bill from ``own_source_id`` (see :func:`nfcpay.terminals.bill.means_plan`).

    The receipt is kept as ``sent`` before the means leave, ``unknown`` when the link is
    lost before the result, and then as the result says (see
    :mod:`nfcpay.terminals.receipts`).
    """
    identity = home.require_role("target")
    receipts = Receipts(home)
    with exchange.tap(
        reader, exchange.PAY_SERVICE, offer=False, timeout=timeout, status=status, what="pay"
    ) as channel:
        exchange.send(channel, exchange.hello_from(home, identity))
        challenge = _receive_challenge(channel)
        purpose = _purpose_or_refuse(channel, challenge)
        wanted = asked(challenge, "you enter")
        shop = Parties(home).labelled(challenge.merchant_id)  # named if paid there before
        status(f"Merchant {shop} asks for {wanted} for purpose {purpose}.")
        challenge = _priced_or_refuse(channel, challenge, amount, merchant, bill_id)
        status(f"Paying {format_minor(challenge.fixed_amount, challenge.currency)}.")
        if bill_id is None:
            shares = _shares_or_refuse(channel, home, challenge, grant_ids)
            means = sign_means(home, identity, challenge, shares)
        else:
            shares, means = _bill_means_or_refuse(
                channel, home, identity, challenge, bill_id, own_source_id
            )
        receipt = Receipt.new(challenge, shares, means)
        receipts.put(receipt)
        try:
            exchange.send(channel, means)
            result = exchange.receive(channel, ResultRecord, exchange.RESULT_TIMEOUT)
        except TransportError as exc:
            receipts.put(receipt.link_lost(exc.message))
            raise LinkLost(
                f"the link to the merchant was lost before its result arrived ({exc.message}); "
                f"`nfcpay target wallet` will tell whether receipt {receipt.receipt_id} "
                "was charged"
            ) from exc
    receipt = record_result(home, receipt, result)
    if bill_id is not None and receipt.status is ReceiptStatus.APPROVED:
        group_bill.mark_paid(home, bill_id, receipt)
    return Paid(receipt)


def _receive_challenge(channel: Channel) -> ChallengeRecord:
    """The merchant's challenge; one of another version (a merchant on another nfcpay
    release) is refused with the sentence that says which side to upgrade."""
    try:
        return exchange.receive(channel, ChallengeRecord)
    except DecodeError as exc:
        if exc.code == UNSUPPORTED_VERSION:
            exchange.refuse(channel, exc.code, exc.message)
        raise


def _priced_or_refuse(
    channel: Channel,
    challenge: ChallengeRecord,
    amount: int | None,
    merchant: str | None,
    bill_id: str | None,
) -> ChallengeRecord:
    try:
        return price(challenge, amount, merchant=merchant, bill_id=bill_id)
    except (AmountRefused, Declined) as exc:
        exchange.refuse(channel, exc.code, exc.message)
        raise


def require_purpose(challenge: ChallengeRecord) -> str:
    """The purpose ``challenge`` asks to pay for: it is signed and shown. A challenge without
    one comes from a merchant terminal on an older nfcpay, whose server request this
    terminal's signature would not match: Declined, saying so."""
    if challenge.purpose is None:
        raise Declined(
            f"merchant {challenge.merchant_id}'s challenge names no purpose: it comes from an "
            "older nfcpay than this terminal's; upgrade nfcpay on the merchant terminal",
            code="unsupported_version",
        )
    return challenge.purpose


def _purpose_or_refuse(channel: Channel, challenge: ChallengeRecord) -> str:
    try:
        return require_purpose(challenge)
    except Declined as exc:
        exchange.refuse(channel, exc.code, exc.message)
        raise


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
    grants = HeldGrants(home)
    shares = [Share(grants.get(grant_id), amount) for grant_id, amount in members]
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


def _shares_or_refuse(
    channel: Channel, home: TerminalHome, challenge: ChallengeRecord, grant_ids: Sequence[str]
) -> list[Share]:
    try:
        return choose_shares(home, challenge, grant_ids)
    except Declined as exc:
        exchange.refuse(channel, exc.code, exc.message)
        raise


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
    means also carry the collector's own share, the bill and its split mode). The signature
    covers the challenge's purpose (Declined if it names none: :func:`require_purpose`)."""
    require_purpose(challenge)
    presented = tuple(
        PresentedGrant(grant_id=held.grant_id, amount=amount, usage_auth=held.record.usage_auth)
        for held, amount in shares
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
    return presentation.signed(challenge, unsigned, home.private_key())
