"""A group bill through an NFC sticker (``--carrier tag``), for readers that can only poll.

Two ACR122Us cannot link, so the bill travels on a sticker (NTAG215/216) that goes back and
forth between the collector's reader and each member's:

1. ``group collect --carrier tag``: the collector's visit writes the request for the next
   open share (bill, collector, amount, when it lapses).
2. ``group join --carrier tag``: the member's visit reads the request and, in the same
   visit, replaces it with the member's grant for exactly that share (bound to the
   collector, one use, tagged with the bill). With a question to answer (no ``--yes``),
   the first visit only reads; the person answers with the sticker away from the reader,
   and a second visit pays.
3. The collector's next visit takes the grant (checked as a tapped one is) and leaves the
   request for the next share, or wipes the sticker when the bill is complete.

Every visit is a read-check-write in one activation (:func:`~nfcpay.transport.tag.swap_tag`):
each side checks what it finds before it overwrites it, so a second member cannot write
over a share the collector has not taken, and a visit that fails leaves the sticker as it
was. A grant on the sticker is worthless to anyone but the collector (the server checks the
binding), so a lost or copied sticker costs nothing.
"""

from __future__ import annotations

import time

from nfcpay.client import PaymentClient
from nfcpay.errors import Declined, DecodeError, TransportError
from nfcpay.money import format_minor
from nfcpay.records import GrantRecord, SplitRequestRecord, decode_one, encode_message
from nfcpay.terminals import bill as bills
from nfcpay.terminals.collector import Collected, Json
from nfcpay.terminals.exchange import Status, quiet
from nfcpay.terminals.held import HeldGrant, HeldGrants
from nfcpay.terminals.home import TerminalHome
from nfcpay.terminals.member import Confirm, Joined, agree, issue_share, refusal_of, share_grant
from nfcpay.terminals.user import grant_record
from nfcpay.transport.reader import Reader
from nfcpay.transport.tag import EMPTY_MESSAGE, is_blank, swap_tag


class Visit(Collected):
    """One visit of the sticker to the collector: it went right when its one event did."""

    @property
    def ok(self) -> bool:
        return bool(self.events) and bool(self.events[-1]["ok"])


def collect_visit(
    home: TerminalHome,
    reader: Reader,
    bill_id: str,
    *,
    timeout: float | None = None,
    status: Status = quiet,
) -> Visit:
    """The sticker's visit to the collector: take a member's share if it holds one, and
    leave the request for the next open share (or nothing, once the bill is complete)."""
    home.require_role("target")
    bill = bills.load(home, bill_id)
    visit = Visit(bill)
    status(f"{bills.progress(bill)}. Hold the bill's sticker to the reader.")
    try:
        event = swap_tag(reader, lambda found: _collector_swap(found, home, bill), timeout=timeout)
    except (Declined, TransportError) as exc:
        event = {"ok": False, "code": exc.code, "message": exc.message}
    visit.events.append(event)
    status(event["message"])
    return visit


def _collector_swap(found: bytes, home: TerminalHome, bill: Json) -> tuple[Json, bytes | None]:
    """What the collector's visit does with what the sticker holds (see the module doc)."""
    request = _next_request(bill)
    if is_blank(found):
        return _wrote_request(bill), request
    record = _bill_record(found)
    if isinstance(record, SplitRequestRecord):
        if record.collector_terminal != bill["collector_terminal"]:
            raise Declined(
                f"the sticker carries bill {record.bill_id} of collector "
                f"{record.collector_terminal}: use a sticker of your own",
                code="not_our_sticker",
            )
        if found == request:
            raise Declined(
                "the sticker still holds the request: no member has paid on it yet "
                "(members run `nfcpay group join --carrier tag`)",
                code="no_share_yet",
            )
        return _wrote_request(bill), request  # a request of an earlier bill or share
    return _take_share(record, home, bill, request)


def _take_share(
    grant: GrantRecord, home: TerminalHome, bill: Json, request: bytes | None
) -> tuple[Json, bytes | None]:
    if grant.bill_id != bill["bill_id"]:
        raise Declined(
            f"the sticker holds a share of bill {grant.bill_id}, not of {bill['bill_id']}",
            code="another_bill",
        )
    member = grant.issuing_terminal
    if bills.slot_of(bill, member) is not None:
        message = f"member {member} has already joined bill {bill['bill_id']}"
        return {"ok": False, "code": "already_joined", "message": message}, request
    slots = bills.open_slots(bill)
    slot = next((s for s in slots if s["amount"] == grant.amount_cap), slots[0])
    try:
        bills.check_member_grant(bill, slot, member, grant)
    except Declined as exc:  # the request goes back on, so someone can pay it properly
        return {"ok": False, "code": exc.code, "message": exc.message}, request
    HeldGrants(home).put(HeldGrant.received(grant))
    bills.record_join(bill, slot, member, grant.grant_id)
    bills.save(home, bill)
    money = format_minor(slot["amount"], bill["currency"])
    event = {
        "ok": True,
        "member": member,
        "slot": slot["slot"],
        "amount": slot["amount"],
        "grant_id": grant.grant_id,
        "message": f"member {member} joined with {money} (grant {grant.grant_id}); "
        + bills.progress(bill),
    }
    return event, _next_request(bill) or EMPTY_MESSAGE


def _next_request(bill: Json) -> bytes | None:
    """The request for the first open share, as the sticker carries it (None: complete)."""
    slots = bills.open_slots(bill)
    return encode_message([bills.split_request(bill, slots[0])]) if slots else None


def _wrote_request(bill: Json) -> Json:
    slots = bills.open_slots(bill)
    if not slots:
        raise Declined(f"bill {bill['bill_id']} is complete: no share is open", code="complete")
    slot = slots[0]
    money = format_minor(slot["amount"], bill["currency"])
    return {
        "ok": True,
        "slot": slot["slot"],
        "amount": slot["amount"],
        "message": f"the sticker asks for a share of {money}: hand it to a member "
        "(`nfcpay group join --carrier tag`), then hold it here again",
    }


def join_by_sticker(
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
    """Read the bill's request from the sticker and write this member's share in its place.

    With ``confirm``, the first visit only reads; the question is asked with the sticker
    away from the reader and a second visit pays exactly the share agreed to.
    """
    identity = home.require_role("user")
    deadline = None if timeout is None else time.monotonic() + timeout
    expected_bill = None
    if confirm is not None:
        status("Hold the bill's sticker to the reader to read your share.")
        read = swap_tag(reader, lambda found: (_request_on(found), None), timeout=timeout)
        agree(read, identity, maximum, confirm)
        maximum, expected_bill = read.amount, read.bill_id
        status(f"Hold the sticker to the reader again to pay {_money(read)}.")

    def pay(found: bytes) -> tuple[Joined, bytes]:
        request = _request_on(found)
        refusal = refusal_of(identity, request, maximum, expected_bill)
        if refusal is not None:
            raise refusal
        status(
            f"Bill {request.bill_id} from {request.collector_terminal}: paying {_money(request)}."
        )
        entry = share_grant(home, request)
        if entry is None:
            entry = issue_share(home, identity, client, request, source_id, purposes, merchants)
        record = grant_record(entry, identity, request.collector_terminal)
        return Joined(request, entry["grant"]), encode_message([record])

    if confirm is None:
        status("Hold the bill's sticker to the reader.")
    left = None if deadline is None else max(0.1, deadline - time.monotonic())
    return swap_tag(reader, pay, timeout=left)


def _request_on(found: bytes) -> SplitRequestRecord:
    """The bill's request the sticker holds, or why it holds none."""
    if is_blank(found):
        raise Declined(
            "the sticker is blank: the collector writes the bill's request on it first "
            "(`nfcpay group collect --carrier tag`)",
            code="no_request",
        )
    record = _bill_record(found)
    if isinstance(record, GrantRecord):
        raise Declined(
            "the sticker holds a share the collector has not taken yet: hand it back to "
            "the collector first",
            code="share_waiting",
        )
    return record


def _bill_record(found: bytes) -> SplitRequestRecord | GrantRecord:
    """A bill's request or a member's share; anything else on the sticker is refused and
    left alone (it may be someone's business card)."""
    try:
        return decode_one(found, (SplitRequestRecord, GrantRecord))
    except DecodeError as exc:
        raise Declined(
            f"the sticker holds something else than a bill ({exc.message}); "
            "use a blank NTAG215/216 sticker",
            code="foreign_sticker",
        ) from None


def _money(request: SplitRequestRecord) -> str:
    return format_minor(request.amount, request.currency)
