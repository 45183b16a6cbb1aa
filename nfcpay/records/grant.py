"""``nfcpay.org:grant``: temporary payment information, handed from the user to the target.

It carries the grant as the server issued it (virtual card number, usage rights) and the
usage-auth value the user terminal derived for the one allowed target terminal. Amounts are
integer minor units of ``currency``. A realistic grant stays well under 200 bytes:

>>> from datetime import UTC, datetime
>>> from nfcpay.records import GrantRecord, decode_one, encode_message
>>> grant = GrantRecord(
...     grant_id="g_3fz7q2m4k9xw6a5b",
...     virtual_card_number="9900770123456789",
...     issuing_terminal="t_u4h2k8m3q7x5w9b6",
...     allowed_terminal="t_k7x2m4q9w3b5n8c6",
...     usage_auth=bytes(32),
...     currency="KRW",
...     amount_cap=50_000,
...     remaining_amount=50_000,
...     max_uses=3,
...     per_use_cap=20_000,
...     valid_until=datetime(2026, 12, 31, tzinfo=UTC),
...     purposes=["5812", "5814"],
... )
>>> octets = encode_message([grant])
>>> len(octets), decode_one(octets, GrantRecord) == grant
(171, True)
>>> "usage_auth" in repr(grant)  # secrets stay out of logs
False
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import ndef

from nfcpay.allowance import Period
from nfcpay.errors import EncodeError
from nfcpay.records.base import NfcpayRecord, record_type, wire_struct
from nfcpay.records.fields import (
    CARD_NUMBER,
    TOKEN,
    Binary,
    Choice,
    Currency,
    Integer,
    Items,
    Text,
    Time,
    amount,
    identifier,
    wire,
)

#: Most purposes, regions or merchants one grant may name.
MAX_LISTED = 8
#: The fields of an allowance (payload version 2), all set or none.
ALLOWANCE_FIELDS = ("allowance_period", "allowance_amount", "time_zone")
PERIOD = Choice(Period, {"day": 1, "week": 2, "month": 3})
#: An IANA time zone name (``Asia/Seoul``); whether this machine knows it is its own concern.
TIME_ZONE = Text(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}", 64, "an IANA time zone name")


@wire_struct
class GrantRecord(NfcpayRecord):
    """A grant with its usage-rights summary and the usage-auth for the allowed terminal.

    Empty ``purposes``/``regions``/``merchants`` mean "any"; ``valid_until`` None means the
    grant never expires by time.
    """

    _type = record_type("grant")
    _decode_max_payload_length = 2048

    grant_id: str = wire(1, identifier("g"))
    virtual_card_number: str = wire(2, CARD_NUMBER)
    issuing_terminal: str = wire(3, identifier("t"))
    allowed_terminal: str = wire(4, identifier("t"))
    usage_auth: bytes = wire(5, Binary(32, 32, secret=True))
    currency: str = wire(6, Currency())
    amount_cap: int = wire(7, amount())
    remaining_amount: int = wire(8, amount(0))
    max_uses: int = wire(9, Integer(1, 1_000_000, "a number of uses"), default=1)
    per_use_cap: int | None = wire(10, amount(), default=None)
    valid_until: datetime | None = wire(11, Time(), default=None)
    purposes: tuple[str, ...] = wire(12, Items(TOKEN, MAX_LISTED), default=())
    regions: tuple[str, ...] = wire(13, Items(TOKEN, MAX_LISTED), default=())
    merchants: tuple[str, ...] = wire(14, Items(identifier("m"), MAX_LISTED), default=())
    bill_id: str | None = wire(15, identifier("b"), default=None)
    allowance_period: Period | None = wire(16, PERIOD, default=None)
    allowance_amount: int | None = wire(17, amount(), default=None)
    time_zone: str | None = wire(18, TIME_ZONE, default=None)

    #: Version 2 added the allowance (fields 16-18). A grant without one is still written in
    #: version 1, so a target on an older nfcpay receives it; one with an allowance tells
    #: such a target to upgrade instead of dropping the limit unread.
    version = 2
    oldest_version = 1

    def payload_version(self) -> int:
        return 1 if self.allowance_period is None else 2

    def to_json(self, *, reveal: bool = False) -> dict[str, Any]:
        """As :meth:`WireStruct.to_json`; the allowance fields only when there is one, so a
        grant without one is shown and stored exactly as before allowances."""
        out = super().to_json(reveal=reveal)
        if self.allowance_period is None:
            for name in ALLOWANCE_FIELDS:
                del out[name]
        return out

    def _check(self) -> None:
        allowance = (self.allowance_period, self.allowance_amount, self.time_zone)
        if None in allowance and allowance != (None, None, None):
            raise EncodeError("grant.allowance_period, allowance_amount and time_zone go together")
        if self.allowance_amount is not None and self.allowance_amount > self.amount_cap:
            raise EncodeError(
                f"grant.allowance_amount {self.allowance_amount} exceeds amount_cap "
                f"{self.amount_cap}"
            )
        if self.remaining_amount > self.amount_cap:
            raise EncodeError(
                f"grant.remaining_amount {self.remaining_amount} exceeds amount_cap "
                f"{self.amount_cap}"
            )
        if self.per_use_cap is not None and self.per_use_cap > self.amount_cap:
            raise EncodeError(
                f"grant.per_use_cap {self.per_use_cap} exceeds amount_cap {self.amount_cap}"
            )


ndef.Record.register_type(GrantRecord)
