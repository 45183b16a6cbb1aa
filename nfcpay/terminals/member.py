"""The member's side of a group bill over NFC: tap the collector and pay one share.

A member who is asked first (no ``--yes``/``--max``) taps twice: the first tap reads the
request and refuses it with ``member_deciding``, the person answers with the link down,
and the second tap pays the agreed share. A tap never waits for a person: a hand that
drifts while reading a question would lose the link.

The member's terminal has the server issue the grant *during* the tap (capped at exactly
the share, one use, valid until the request lapses, allowed terminal = the collector,
bound to the bill), so grant and usage-auth go back in the same tap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from nfcpay.client import PaymentClient
from nfcpay.errors import Declined, NfcPayError, TransportError
from nfcpay.money import format_minor
from nfcpay.records import AckRecord, SplitRequestRecord
from nfcpay.split import within_maximum
from nfcpay.terminals import exchange
from nfcpay.terminals.exchange import Status, quiet
from nfcpay.terminals.home import Identity, TerminalHome
from nfcpay.terminals.user import default_source, grant_record
from nfcpay.transport.channel import Channel
from nfcpay.transport.reader import Reader

Json = dict[str, Any]
T = TypeVar("T")
#: Asked before the member's grant is issued: True to pay the share.
Confirm = Callable[[SplitRequestRecord], bool]


@dataclass(frozen=True)
class Joined:
    """A member's side of a join: the request it answered and the grant it gave."""

    request: SplitRequestRecord
    grant: Json

    def to_json(self) -> Json:
        return {
            "ok": True,
            "bill_id": self.request.bill_id,
            "collector_terminal": self.request.collector_terminal,
            "amount": self.request.amount,
            "currency": self.request.currency,
            "expires_at": self.request.expires_at.isoformat(),
            "grant": self.grant,
        }


def join(
    home: TerminalHome,
    client: PaymentClient,
    reader: Reader,
    *,
    source_id: str | None = None,
    maximum: int | None = None,
    confirm: Confirm | None = None,
    purposes: tuple[str, ...] = (),
    merchants: tuple[str, ...] = (),
    timeout: float | None = None,
    status: Status = quiet,
) -> Joined:
    """Tap the collector, read its split request and pay the share with a fresh grant.

    A tap never waits for a person: with ``confirm``, a first tap only reads the request
    (the collector is told the member is deciding), the question is asked with the link
    down, and a second tap pays exactly the share that was agreed to.
    """
    identity = home.require_role("user")
    deadline = None if timeout is None else time.monotonic() + timeout
    expected_bill = None
    if confirm is not None:
        read = _tap_collector(reader, deadline, status, lambda c: _read_request(c, home, identity))
        if isinstance(read, Joined):
            return read
        agree(read, identity, maximum, confirm)
        maximum, expected_bill = read.amount, read.bill_id
        status(f"Tap the collector again to pay {format_minor(read.amount, read.currency)}.")

    def pay(channel: Channel) -> Joined:
        return _join_in_tap(
            channel, home, identity, client, source_id, maximum, expected_bill,
            purposes, merchants, status,
        )  # fmt: skip

    return _tap_collector(reader, deadline, status, pay)


def _tap_collector(
    reader: Reader, deadline: float | None, status: Status, talk: Callable[[Channel], T]
) -> T:
    """One conversation with the collector, tapping again while nothing has been said."""
    while True:
        opened = False
        try:
            with exchange.tap(
                reader,
                exchange.SPLIT_SERVICE,
                offer=False,
                timeout=None if deadline is None else max(0.1, deadline - time.monotonic()),
                status=status,
                what="join a bill",
            ) as channel:
                opened = True
                return talk(channel)
        except TransportError:
            # The collector's reader was between two members' taps: nothing was said yet,
            # so tapping again is safe.
            if opened or (deadline is not None and time.monotonic() >= deadline):
                raise
            time.sleep(0.05)


def _read_request(
    channel: Channel, home: TerminalHome, identity: Identity
) -> SplitRequestRecord | Joined:
    """The first of two taps: read the request, tell the collector the member is deciding."""
    exchange.send(channel, exchange.hello_from(home, identity))
    answer = exchange.receive_or_refusal(channel, SplitRequestRecord)
    if isinstance(answer, AckRecord):
        return _joined_before(home, answer)
    exchange.refuse(
        channel, "member_deciding", "the member is deciding; they tap again", ref=answer.bill_id
    )
    return answer


def _join_in_tap(
    channel: Channel,
    home: TerminalHome,
    identity: Identity,
    client: PaymentClient,
    source_id: str | None,
    maximum: int | None,
    expected_bill: str | None,
    purposes: tuple[str, ...],
    merchants: tuple[str, ...],
    status: Status,
) -> Joined:
    exchange.send(channel, exchange.hello_from(home, identity))
    answer = exchange.receive_or_refusal(channel, SplitRequestRecord)
    if isinstance(answer, AckRecord):
        return _joined_before(home, answer)
    request = answer
    money = format_minor(request.amount, request.currency)
    status(f"Bill {request.bill_id} from {request.collector_terminal}: your share is {money}.")
    refusal = refusal_of(identity, request, maximum, expected_bill)
    if refusal is not None:
        exchange.refuse(channel, refusal.code, refusal.message, ref=request.bill_id)
        raise refusal
    entry = share_grant(home, request)
    if entry is None:
        try:
            entry = issue_share(home, identity, client, request, source_id, purposes, merchants)
        except NfcPayError as exc:
            exchange.refuse(channel, "issue_failed", f"the member's server refused: {exc.message}")
            raise
    exchange.send(channel, grant_record(entry, identity, request.collector_terminal))
    exchange.receive(channel, AckRecord)  # a refusal raises Declined
    return Joined(request, entry["grant"])


def share_grant(home: TerminalHome, request: SplitRequestRecord) -> Json | None:
    """The grant this member already issued for exactly this share, if any.

    A tap that ended after the grant was issued may or may not have delivered it; tapping
    again hands over the same grant, so a bill never holds two grants of one member.
    """
    for entry in home.items("grants"):
        grant = entry["grant"]
        if (
            grant.get("bill_id") == request.bill_id
            and grant["allowed_terminals"] == [request.collector_terminal]
            and grant["currency"] == request.currency
            and grant["rights"]["amount_cap"] == request.amount
        ):
            return entry
    return None


def _joined_before(home: TerminalHome, refusal: AckRecord) -> Joined:
    """The collector says this member has already joined bill ``refusal.ref``: a tap whose
    ack was lost. With the grant for that bill held here, the join is done."""
    held = [e["grant"] for e in home.items("grants") if e["grant"].get("bill_id") == refusal.ref]
    if refusal.code != "already_joined" or not refusal.ref or not held:
        raise exchange.declined(refusal)
    grant = held[-1]
    request = SplitRequestRecord(
        bill_id=grant["bill_id"],
        collector_terminal=grant["allowed_terminals"][0],
        currency=grant["currency"],
        amount=grant["rights"]["amount_cap"],
        expires_at=datetime.fromisoformat(grant["rights"]["valid_until"]),
    )
    return Joined(request, grant)


def issue_share(
    home: TerminalHome,
    identity: Identity,
    client: PaymentClient,
    request: SplitRequestRecord,
    source_id: str | None,
    purposes: tuple[str, ...],
    merchants: tuple[str, ...],
) -> Json:
    """Have the server issue this member's grant for the share; keep it here."""
    answer = client.issue_grant(
        source_id or default_source(client, identity.currency),
        [request.collector_terminal],
        amount_cap=request.amount,
        currency=request.currency,
        max_uses=1,
        valid_until=request.expires_at,
        purposes=list(purposes) or None,
        merchants=list(merchants) or None,
        bill_id=request.bill_id,
    )
    grant: Json = answer["grant"]
    entry = {"grant": grant, "auth_code": answer["auth_code"]}
    home.put("grants", grant["grant_id"], entry)
    return entry


def agree(
    request: SplitRequestRecord, identity: Identity, maximum: int | None, confirm: Confirm
) -> None:
    """Ask the person whether to pay ``request`` (with the link down); raise when not."""
    refusal = refusal_of(identity, request, maximum, None)
    if refusal is not None:
        raise refusal
    if not confirm(request):
        money = format_minor(request.amount, request.currency)
        raise Declined(
            f"you declined to pay {money} of bill {request.bill_id}", code="refused_by_member"
        )


def refusal_of(
    identity: Identity,
    request: SplitRequestRecord,
    maximum: int | None,
    expected_bill: str | None,
) -> Declined | None:
    """Why this member will not pay ``request`` (None: it may be paid)."""
    money = format_minor(request.amount, request.currency)
    if expected_bill is not None and request.bill_id != expected_bill:
        return Declined(f"this is bill {request.bill_id}, not {expected_bill}", code="another_bill")
    if request.currency != identity.currency:
        return Declined(f"the share is in {request.currency}", code="currency_mismatch")
    if request.expires_at <= datetime.now(UTC):
        message = f"the split request lapsed at {request.expires_at}"
        return Declined(message, code="request_expired")
    if not within_maximum(request.amount, maximum):
        cap = format_minor(maximum or 0, request.currency)
        message = f"the share {money} is over this member's maximum {cap}"
        return Declined(message, code="over_maximum")
    return None
