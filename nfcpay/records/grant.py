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

import ndef

from nfcpay.errors import EncodeError
from nfcpay.records.base import NfcpayRecord, record_type, wire_struct
from nfcpay.records.fields import (
    CARD_NUMBER,
    TOKEN,
    Binary,
    Currency,
    Integer,
    Items,
    Time,
    amount,
    identifier,
    wire,
)

#: Most purposes, regions or merchants one grant may name.
MAX_LISTED = 8


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

    def _check(self) -> None:
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
