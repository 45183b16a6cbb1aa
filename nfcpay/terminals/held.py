"""The grants a target terminal holds, and which of them pay how much of a challenge.

A :class:`HeldGrant` is a received :class:`~nfcpay.records.GrantRecord` (with its usage-auth),
when it arrived, and :class:`LastKnown`: what this terminal last knew of the grant's remaining
amount, remaining uses and :class:`GrantStatus`. :class:`HeldGrants` keeps them in the home
directory as ``grants/<grant id>.json``, in this shape (the usage-auth revealed)::

    {"grant_id", "record": <GrantRecord JSON>, "received_at",
     "last_known": {"remaining_amount", "remaining_uses", "status", "as_of",
                    "allowance_left", "allowance_renews_at"}}

(the last two only for a grant with an allowance, once the server or a payment told).

``last_known`` starts from the record (``active``, every use left), counts down here after
each approved payment (``exhausted`` once no use or no amount is left, see
:meth:`HeldGrant.charged`) and is replaced by the server's view on ``target wallet`` (see
:func:`nfcpay.terminals.wallet.refresh`).

:func:`choose_shares` picks the grants that pay a challenge: the ones named, or else every
:func:`usable` grant, smallest remaining amount first, each paying up to its
:func:`capacity`: what it has left, at most its per-use cap and what its allowance has left
in the current interval (:func:`allowance_left`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from nfcpay import allowance
from nfcpay.errors import Declined
from nfcpay.money import format_minor
from nfcpay.records import ChallengeRecord, GrantRecord
from nfcpay.terminals.clock import now_iso
from nfcpay.terminals.home import TerminalHome
from nfcpay.terminals.shelf import Shelf

Json = dict[str, Any]


class GrantStatus(StrEnum):
    """A held grant's status: the server's (see ``shown_status`` in
    ``nfcpay/server/services/grants.py``), or ``exhausted`` counted down here."""

    ACTIVE = "active"
    #: Handed over in a tap; its owner has not confirmed this terminal yet.
    UNCONFIRMED = "unconfirmed"
    EXHAUSTED = "exhausted"
    EXPIRED = "expired"
    REVOKED = "revoked"
    LOCKED = "locked"


@dataclass(frozen=True)
class LastKnown:
    """What this terminal last knew of a held grant, and since when (``as_of``)."""

    remaining_amount: int
    remaining_uses: int
    status: GrantStatus
    as_of: str
    #: For a grant with an allowance: what was left of the interval ending at
    #: ``allowance_renews_at`` (ISO; None: not known).
    allowance_left: int | None = None
    allowance_renews_at: str | None = None

    @classmethod
    def from_server(cls, view: Json) -> LastKnown:
        """What the server's view of the grant (``GET /v1/grants``) says, as of now."""
        return cls.from_json({**view, "as_of": now_iso()})

    @classmethod
    def from_json(cls, data: Json) -> LastKnown:
        return cls(
            remaining_amount=data["remaining_amount"],
            remaining_uses=data["remaining_uses"],
            status=GrantStatus(data["status"]),
            as_of=data["as_of"],
            allowance_left=data.get("allowance_left"),
            allowance_renews_at=data.get("allowance_renews_at"),
        )

    def to_json(self) -> Json:
        out: Json = {
            "remaining_amount": self.remaining_amount,
            "remaining_uses": self.remaining_uses,
            "status": self.status.value,
            "as_of": self.as_of,
        }
        if self.allowance_left is not None:
            out["allowance_left"] = self.allowance_left
            out["allowance_renews_at"] = self.allowance_renews_at
        return out


@dataclass(frozen=True)
class HeldGrant:
    """A grant this terminal received and may present."""

    record: GrantRecord
    received_at: str
    last_known: LastKnown

    @property
    def grant_id(self) -> str:
        return self.record.grant_id

    @classmethod
    def received(cls, record: GrantRecord) -> HeldGrant:
        """A grant just handed over: all of it left, as the record says (an allowance's
        spending so far is the server's to tell: :func:`allowance_left` assumes none)."""
        now = now_iso()
        known = LastKnown(record.remaining_amount, record.max_uses, GrantStatus.ACTIVE, now)
        return cls(record, now, known)

    def charged(self, amount: int) -> HeldGrant:
        """This grant after an approved payment took ``amount`` and one use of it."""
        known = self.last_known
        remaining_amount = max(0, known.remaining_amount - amount)
        remaining_uses = max(0, known.remaining_uses - 1)
        spent = remaining_uses == 0 or remaining_amount == 0
        left, renews = allowance_left(self), _renews_at(self.record)
        return replace(
            self,
            last_known=LastKnown(
                remaining_amount,
                remaining_uses,
                GrantStatus.EXHAUSTED if spent else known.status,
                now_iso(),
                None if left is None else max(0, left - amount),
                renews,
            ),
        )

    @classmethod
    def from_json(cls, data: Json) -> HeldGrant:
        record = GrantRecord.from_json(data["record"], "record")
        if data["grant_id"] != record.grant_id:
            raise ValueError(f"grant_id {data['grant_id']!r} but a record of {record.grant_id}")
        return cls(record, data["received_at"], LastKnown.from_json(data["last_known"]))

    def to_json(self) -> Json:
        return {
            "grant_id": self.grant_id,
            "record": self.record.to_json(reveal=True),
            "received_at": self.received_at,
            "last_known": self.last_known.to_json(),
        }


class HeldGrants(Shelf[HeldGrant]):
    """The grants held in a target's home: ``grants/<grant id>.json``."""

    kind = "grants"
    id_field = "grant_id"

    def parse(self, data: Json) -> HeldGrant:
        return HeldGrant.from_json(data)


def held_entry(grant: GrantRecord) -> Json:
    """What this terminal keeps of a just received grant, as its file holds it."""
    return HeldGrant.received(grant).to_json()


class Share(NamedTuple):
    """How much of a payment one held grant pays (at least one minor unit)."""

    held: HeldGrant
    amount: int


def choose_shares(
    home: TerminalHome, challenge: ChallengeRecord, grant_ids: Sequence[str] = ()
) -> list[Share]:
    """Which held grants pay how much of ``challenge`` (each share ≥ 1 minor unit).

    Named grants are presented as asked, the last one with whatever is left (the server
    decides); otherwise the usable grants pay, smallest remaining amount first.
    """
    grants = HeldGrants(home)
    if grant_ids:
        chosen = [grants.get(grant_id) for grant_id in grant_ids]
    else:
        chosen = [held for held in grants.each() if usable(held, challenge)]
        chosen.sort(key=lambda held: held.last_known.remaining_amount)
    shares: list[Share] = []
    left = challenge.fixed_amount
    for index, held in enumerate(chosen):
        last = index == len(chosen) - 1
        share = left if last and grant_ids else min(left, capacity(held))
        if share > 0:
            shares.append(Share(held, share))
            left -= share
    if left > 0 or not shares:
        covered = format_minor(challenge.fixed_amount - left, challenge.currency)
        asked = format_minor(challenge.fixed_amount, challenge.currency)
        raise Declined(f"the grants held here cover {covered} of {asked}", code="no_usable_grant")
    return shares


def capacity(held: HeldGrant) -> int:
    """The most one payment can take from a held grant, as far as this terminal knows."""
    limits = [held.last_known.remaining_amount, held.record.per_use_cap, allowance_left(held)]
    return min(limit for limit in limits if limit is not None)


def allowance_left(held: HeldGrant, now: datetime | None = None) -> int | None:
    """What is left of a held grant's allowance in the interval ``now`` (default: this
    instant) falls in, as far as this terminal knows: what the server last said, unless that
    interval has ended since (then all of it); None for a grant without an allowance."""
    record, known = held.record, held.last_known
    if record.allowance_amount is None:
        return None
    now = now or datetime.now(UTC)
    renews = known.allowance_renews_at
    if known.allowance_left is None or renews is None or datetime.fromisoformat(renews) <= now:
        return record.allowance_amount
    return known.allowance_left


def allowance_now(held: HeldGrant) -> tuple[int, str | None] | None:
    """What is left of a held grant's allowance now and when it renews (ISO, None if this
    terminal cannot reckon it); None for a grant without an allowance."""
    left = allowance_left(held)
    if left is None:
        return None
    renews = held.last_known.allowance_renews_at
    if renews is None or datetime.fromisoformat(renews) <= datetime.now(UTC):
        renews = _renews_at(held.record)
    return left, renews


def _renews_at(record: GrantRecord) -> str | None:
    """When the allowance interval this instant falls in ends (ISO), as this terminal's clock
    and zone data reckon it; None without an allowance or the zone's data."""
    if record.allowance_period is None or record.time_zone is None:
        return None
    try:
        tz = allowance.zone(record.time_zone)
    except ValueError:
        return None
    end = allowance.interval(record.allowance_period, tz, datetime.now(UTC))[1]
    return end.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def usable(held: HeldGrant, challenge: ChallengeRecord) -> bool:
    """Whether a held grant may pay at this merchant, as far as this terminal knows (one
    that waited for its owner's confirmation may have it by now: the server decides)."""
    record, known = held.record, held.last_known
    return (
        known.status in {GrantStatus.ACTIVE, GrantStatus.UNCONFIRMED}
        and known.remaining_uses > 0
        and known.remaining_amount > 0
        and allowance_left(held) != 0
        and record.currency == challenge.currency
        and record.bill_id == challenge.bill_id
        and (record.valid_until is None or record.valid_until > datetime.now(UTC))
        and (not record.merchants or challenge.merchant_id in record.merchants)
        and (not record.purposes or challenge.purpose in record.purposes)
    )
