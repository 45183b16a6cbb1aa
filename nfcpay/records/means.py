"""``nfcpay.org:means``: the target terminal's answer to a challenge.

It names the grants it pays with (each with its share and usage-auth), optionally its own
funding source and share, and its Ed25519 signature over its presentation for the
merchant's challenge (:mod:`nfcpay.records.presentation`). Its payload version is the
presentation layout the signature is over (:data:`nfcpay.crypto.PRESENTATION_VERSION`).

>>> from nfcpay.records import MeansRecord, PresentedGrant, decode_one, encode_message
>>> means = MeansRecord(
...     presenting_terminal="t_k7x2m4q9w3b5n8c6",
...     currency="KRW",
...     grants=[PresentedGrant(grant_id="g_3fz7q2m4k9xw6a5b", amount=12_000, usage_auth=bytes(32))],
...     signature=bytes(64),
... )
>>> octets = encode_message([means])
>>> len(octets), decode_one(octets, MeansRecord) == means, means.total
(175, True, 12000)
"""

from __future__ import annotations

import enum

import ndef

from nfcpay import crypto
from nfcpay.errors import EncodeError
from nfcpay.records.base import NfcpayRecord, WireStruct, record_type, wire_struct
from nfcpay.records.fields import (
    Binary,
    Choice,
    Currency,
    Items,
    Nested,
    amount,
    identifier,
    wire,
)

#: Most grants one payment means may bundle (a group bill of eight).
MAX_GRANTS = 8


@wire_struct
class PresentedGrant(WireStruct):
    """One grant in a payment means: its id, the part of the bill it pays, its usage-auth."""

    type_name = "means.grant"

    grant_id: str = wire(1, identifier("g"))
    amount: int = wire(2, amount())
    usage_auth: bytes = wire(3, Binary(32, 32, secret=True))


class SplitMode(enum.StrEnum):
    """How a group bill's own share is found: named exactly, or whatever the grants leave."""

    EXACT = "exact"
    REMAINDER = "remainder"


@wire_struct
class MeansRecord(NfcpayRecord):
    """Presenting terminal, grant shares, optional own source and share, signature, and for
    a group bill its id and split mode (the merchant passes both on to the server).

    ``own_source_id`` and a positive ``own_amount`` go together; at least one grant or an
    own share must be present, and no grant may appear twice.
    """

    _type = record_type("means")
    #: The payload version is the presentation layout its signature is over: version 2 signs
    #: the challenge's purpose, and a means of version 1 (signed without it) is refused.
    version = crypto.PRESENTATION_VERSION
    _decode_max_payload_length = 1024

    presenting_terminal: str = wire(1, identifier("t"))
    currency: str = wire(2, Currency())
    grants: tuple[PresentedGrant, ...] = wire(
        3, Items(Nested(PresentedGrant), MAX_GRANTS), default=()
    )
    own_source_id: str | None = wire(4, identifier("src"), default=None)
    own_amount: int = wire(5, amount(0), default=0)
    signature: bytes = wire(6, Binary(64, 64, secret=True))
    #: The group bill these means pay (group payment); signed with the rest.
    bill_id: str | None = wire(7, identifier("b"), default=None)
    split_mode: SplitMode = wire(
        8, Choice(SplitMode, {"exact": 1, "remainder": 2}), default=SplitMode.EXACT
    )

    @property
    def total(self) -> int:
        """Sum of all shares in minor units: must equal the challenge amount."""
        return sum(grant.amount for grant in self.grants) + self.own_amount

    def _check(self) -> None:
        if (self.own_source_id is None) != (self.own_amount == 0):
            raise EncodeError("means.own_source_id and a positive own_amount go together")
        if not self.grants and self.own_source_id is None:
            raise EncodeError("means has neither grants nor an own share")
        ids = [grant.grant_id for grant in self.grants]
        if len(set(ids)) != len(ids):
            raise EncodeError("means lists the same grant twice")


ndef.Record.register_type(MeansRecord)
