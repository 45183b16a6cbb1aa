"""The collector's side of a group bill over NFC (service ``split``): it waits, members tap.

=========  ==================  ======================================================
service    waits (listens)     conversation
=========  ==================  ======================================================
``split``  collector (target)  member: hello → collector: split request →
                               member: grant (or a refusal) → collector: ack
=========  ==================  ======================================================

Each tap fills one open share of the bill (:mod:`nfcpay.terminals.bill`); a tap that fails
leaves its share open for the next one. The member's side is :mod:`nfcpay.terminals.member`;
the same bill over a sticker is :mod:`nfcpay.terminals.bill_sticker`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from nfcpay.errors import ConfigError, Declined, TransportError
from nfcpay.money import format_minor
from nfcpay.records import AckRecord, GrantRecord, HelloRecord, Role
from nfcpay.terminals import bill as bills
from nfcpay.terminals import exchange
from nfcpay.terminals.exchange import Status, quiet
from nfcpay.terminals.held import HeldGrant, HeldGrants
from nfcpay.terminals.home import Identity, TerminalHome
from nfcpay.transport.channel import Channel
from nfcpay.transport.reader import Reader

Json = dict[str, Any]


@dataclass
class Collected:
    """What ``collect`` ended with: the bill and one line per tap."""

    bill: Json
    events: list[Json] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not bills.open_slots(self.bill)

    @property
    def ok(self) -> bool:
        """Whether the command did what it was asked (here: every member joined)."""
        return self.complete

    def to_json(self) -> Json:
        return {"ok": self.ok, "bill": self.bill, "events": self.events}


def collect(
    home: TerminalHome,
    reader: Reader,
    bill_id: str,
    *,
    timeout: float | None = None,
    status: Status = quiet,
) -> Collected:
    """Wait for members' taps until every slot of the bill is joined or ``timeout`` passes.

    A tap that fails (member refused, link lost, wrong grant) leaves its slot open and the
    collector waits for the next tap.
    """
    identity = home.require_role("target")
    bill = bills.load(home, bill_id)
    result = Collected(bill)
    deadline = None if timeout is None else time.monotonic() + timeout
    while bills.open_slots(bill):
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        status(bills.progress(bill))
        try:
            with exchange.tap(
                reader,
                exchange.SPLIT_SERVICE,
                offer=True,
                timeout=left,
                status=status,
                what="collect",
            ) as channel:
                event = _collect_one(channel, home, identity, bill)
        except Declined as exc:
            event = {"ok": False, "code": exc.code, "message": exc.message}
        except TransportError as exc:
            event = {"ok": False, "code": exc.code, "message": exc.message}
            if deadline is not None and time.monotonic() >= deadline:
                result.events.append(event)  # why the wait ended (e.g. nobody could link)
                break
        result.events.append(event)
        status(event["message"])
    return result


def _collect_one(channel: Channel, home: TerminalHome, identity: Identity, bill: Json) -> Json:
    hello = exchange.receive(channel, HelloRecord)
    member = hello.terminal_id
    if hello.role is not Role.USER:
        message = f"a {hello.role.value} terminal tapped; members join with a user terminal"
        exchange.refuse(channel, "wrong_role", message)
        raise Declined(message, code="wrong_role")
    if bills.slot_of(bill, member) is not None:
        message = f"member {member} has already joined bill {bill['bill_id']}"
        exchange.refuse(channel, "already_joined", message, ref=bill["bill_id"])
        raise Declined(message, code="already_joined")
    slot = bills.open_slots(bill)[0]
    exchange.send(channel, bills.split_request(bill, slot))
    grant = exchange.receive(channel, GrantRecord, exchange.RESULT_TIMEOUT)
    try:
        bills.check_member_grant(bill, slot, member, grant)
    except Declined as exc:
        exchange.refuse(channel, exc.code, exc.message, ref=grant.grant_id)
        raise
    HeldGrants(home).put(HeldGrant.received(grant))
    bills.record_join(bill, slot, member, grant.grant_id)
    bills.save(home, bill)
    exchange.send(channel, AckRecord(accepted=True, ref=grant.grant_id))
    money = format_minor(slot["amount"], bill["currency"])
    return {
        "ok": True,
        "member": member,
        "slot": slot["slot"],
        "amount": slot["amount"],
        "grant_id": grant.grant_id,
        "message": f"member {member} joined with {money} (grant {grant.grant_id}); "
        + bills.progress(bill),
    }


def require_bill(home: TerminalHome, bill_id: str) -> Json:
    """A bill of this collector, or a clear error."""
    home.require_role("target")
    try:
        return bills.load(home, bill_id)
    except ConfigError:
        raise ConfigError(f"no bill {bill_id} in {home.path}") from None
