"""Grants sent through the server (patent [0047]), for an owner who is not at the counter.

The owner names the target terminal (:func:`send`): the user terminal builds the same
hand-off record it would send in a tap (:func:`~nfcpay.terminals.user.grant_record`: the
grant and the usage-auth for that one target) and the server keeps it, encrypted, for that
target alone. The target fetches it with its signed key (:func:`receive`, or
:func:`follow` to wait for the next), decodes and checks it exactly as a tapped grant, keeps
it, and only then acknowledges it; the server then deletes its copy and tells the owner.
The target may also take one delivery (:func:`receive_one`, the wallet page's button).
Fetching is repeatable until the acknowledgement, so an answer lost on the way (or a crash
between keeping and acknowledging) never loses a grant: the next fetch yields the same
record, and keeping it again changes nothing. Revoking the grant first withdraws it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nfcpay import crypto
from nfcpay.client import PaymentClient
from nfcpay.errors import ApiError, ConfigError, Conflict, Declined
from nfcpay.names import labelled
from nfcpay.records import GrantRecord, decode_one, encode_message
from nfcpay.terminals.held import HeldGrant, HeldGrants
from nfcpay.terminals.home import Identity, TerminalHome
from nfcpay.terminals.parties import Parties
from nfcpay.terminals.user import Rights, grant_record, obtain

Json = dict[str, Any]

#: How long one long-poll of :func:`follow` waits for the server (it allows up to 30 s).
FOLLOW_WAIT_S = 25.0


@dataclass(frozen=True)
class Sent:
    """A grant the server now keeps for its target: the grant and the delivery."""

    grant: Json
    delivery: Json

    def to_json(self) -> Json:
        return {"ok": True, "grant": self.grant, "delivery": self.delivery}


def send(
    home: TerminalHome,
    client: PaymentClient,
    what: Rights | str,
    *,
    to: str | None,
    source_id: str | None = None,
) -> Sent:
    """Send a grant to target terminal ``to`` through the server: a new one with these
    :class:`Rights` (bound to ``to``), or the grant with this id issued earlier (``to`` may
    then be left out: its target)."""
    identity = home.require_role("user")
    if to is None and not isinstance(what, str):
        raise ConfigError("a grant sent through the server needs its target: name it with --to")
    entry = obtain(home, client, what, to, source_id)
    grant = entry["grant"]
    target = to or str(grant["allowed_terminals"][0])
    if target not in grant["allowed_terminals"]:
        bound = ", ".join(grant["allowed_terminals"])
        raise ConfigError(f"grant {grant['grant_id']} is bound to {bound}, not to {target}")
    record = encode_message([grant_record(entry, identity, target)])
    try:
        delivery = client.send_grant(grant["grant_id"], target, record)
    except ApiError as exc:
        if isinstance(what, str):
            raise
        if exc.status is not None and 400 <= exc.status < 500 and not exc.retryable:
            # Refused for good (e.g. ``to`` is no target terminal): a grant that can never
            # reach its only terminal is withdrawn rather than left active.
            client.revoke_grant(grant["grant_id"])
            raise _refused_and_withdrawn(exc, grant["grant_id"]) from exc
        raise _issued_not_sent(exc, grant["grant_id"]) from exc
    return Sent(grant, delivery)


def _refused_and_withdrawn(exc: ApiError, grant_id: str) -> ApiError:
    """The server refused to deliver a grant issued for this very send: it was revoked."""
    return type(exc)(
        f"{exc.message}; grant {grant_id}, issued for this send, was revoked",
        code=exc.code,
        status=exc.status,
        request_id=exc.request_id,
    )


def _issued_not_sent(exc: ApiError, grant_id: str) -> ApiError:
    """The grant was issued but the server did not take it for delivery: a retry must send
    this grant, not issue a second one."""
    return type(exc)(
        f"{exc.message}; grant {grant_id} was issued but not sent: send it with "
        f"`nfcpay user send --grant {grant_id}` (or `nfcpay user revoke {grant_id}`), "
        "do not issue another",
        code=exc.code,
        status=exc.status,
        request_id=exc.request_id,
    )


@dataclass(frozen=True)
class Received:
    """A grant fetched from the server and kept here, and where it came from."""

    held: HeldGrant
    delivery: Json


def inbox(home: TerminalHome, client: PaymentClient) -> list[tuple[Json, GrantRecord]]:
    """The grants waiting on the server for this terminal, decoded and checked as a tapped
    grant is, without keeping or acknowledging them (a later fetch yields them again)."""
    identity = home.require_role("target")
    return [(item, _checked(item, identity)) for item in client.deliveries()]


def receive(home: TerminalHome, client: PaymentClient, *, wait: float = 0) -> list[Received]:
    """Fetch the grants waiting for this terminal, keep each, then acknowledge it (with
    ``wait``: hold the fetch open up to that many seconds until one arrives)."""
    identity = home.require_role("target")
    return [_keep(home, client, item, identity) for item in client.deliveries(wait=wait)]


def receive_one(home: TerminalHome, client: PaymentClient, delivery_id: str) -> Received:
    """Fetch, keep and acknowledge the one delivery ``delivery_id`` (as :func:`receive`
    does each)."""
    identity = home.require_role("target")
    item = client.get_delivery(delivery_id)
    if "record" not in item:
        sender = labelled(item["from"]["label"], item["from"]["terminal_id"])
        raise Conflict(
            f"grant {item['grant_id']} from {sender} was already received here",
            code="already_delivered",
        )
    return _keep(home, client, item, identity)


def follow(home: TerminalHome, client: PaymentClient) -> Iterator[Received]:
    """Every grant sent to this terminal from now on, kept as it arrives (forever)."""
    while True:
        yield from receive(home, client, wait=FOLLOW_WAIT_S)


def _keep(home: TerminalHome, client: PaymentClient, item: Json, identity: Identity) -> Received:
    record = _checked(item, identity)
    grants = HeldGrants(home)
    held = _already_held(grants, record) or HeldGrant.received(record)
    grants.put(held)
    Parties(home).keep(item["from"]["terminal_id"], item["from"]["label"])
    client.ack_delivery(item["delivery_id"])
    public = {key: value for key, value in item.items() if key != "record"}
    return Received(held, public | {"status": "delivered"})


def _already_held(grants: HeldGrants, record: GrantRecord) -> HeldGrant | None:
    """The grant as kept here from an earlier fetch whose acknowledgement was lost."""
    try:
        held = grants.get(record.grant_id)
    except ConfigError:
        return None
    return held if held.record == record else None


def _checked(item: Json, identity: Identity) -> GrantRecord:
    """The delivery's record decoded and checked as a tapped grant is: bound to this
    terminal (a record from another nfcpay release names the side to upgrade)."""
    record = decode_one(crypto.b64d(item["record"]), GrantRecord)
    if record.grant_id != item["grant_id"] or record.allowed_terminal != identity.terminal_id:
        raise Declined(
            f"delivery {item['delivery_id']} holds grant {record.grant_id} for "
            f"{record.allowed_terminal}, not this terminal's grant: it was not kept",
            code="terminal_not_allowed",
        )
    return record
