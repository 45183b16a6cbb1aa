"""``nfcpay.org:split``: a collector asks a group member to pay a share of a bill.

The member's user terminal answers with a grant capped at ``amount`` and tagged with
``bill_id``.

>>> from datetime import UTC, datetime
>>> from nfcpay.records import SplitRequestRecord, decode_one, encode_message
>>> split = SplitRequestRecord(
...     bill_id="b_q4m7x2k9w3h5n8c6",
...     collector_terminal="t_k7x2m4q9w3b5n8c6",
...     currency="KRW",
...     amount=15_000,
...     expires_at=datetime(2026, 6, 1, 12, 30, tzinfo=UTC),
... )
>>> octets = encode_message([split])
>>> len(octets), decode_one(octets, SplitRequestRecord) == split
(76, True)
"""

from __future__ import annotations

from datetime import datetime

import ndef

from nfcpay.records.base import NfcpayRecord, record_type, wire_struct
from nfcpay.records.fields import Currency, Time, amount, identifier, wire


@wire_struct
class SplitRequestRecord(NfcpayRecord):
    """Bill id, collecting terminal, this member's share, and when the request lapses."""

    _type = record_type("split")
    _decode_max_payload_length = 256

    bill_id: str = wire(1, identifier("b"))
    collector_terminal: str = wire(2, identifier("t"))
    currency: str = wire(3, Currency())
    amount: int = wire(4, amount())
    expires_at: datetime = wire(5, Time())


ndef.Record.register_type(SplitRequestRecord)
