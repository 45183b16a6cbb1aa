"""``nfcpay.org:challenge``: the merchant asks the target terminal to pay.

The fresh ``nonce`` is what the target signs (with the amount and the merchant) in its
payment means, so a copied means is useless at any other counter or a second time.

>>> from nfcpay.records import ChallengeRecord, decode_one, encode_message
>>> challenge = ChallengeRecord(
...     merchant_id="m_r2d5k8x3q7w4b9n6",
...     currency="KRW",
...     amount=12_000,
...     nonce=bytes(range(16)),
...     purpose="5812",
... )
>>> octets = encode_message([challenge])
>>> len(octets), decode_one(octets, ChallengeRecord) == challenge
(78, True)
"""

from __future__ import annotations

import ndef

from nfcpay.records.base import NfcpayRecord, record_type, wire_struct
from nfcpay.records.fields import TOKEN, Binary, Currency, amount, identifier, wire


@wire_struct
class ChallengeRecord(NfcpayRecord):
    """Merchant, amount, optional purpose (category code) and bill, and a 16-32 byte nonce."""

    _type = record_type("challenge")
    _decode_max_payload_length = 256

    merchant_id: str = wire(1, identifier("m"))
    currency: str = wire(2, Currency())
    amount: int = wire(3, amount())
    nonce: bytes = wire(4, Binary(16, 32))
    purpose: str | None = wire(5, TOKEN, default=None)
    bill_id: str | None = wire(6, identifier("b"), default=None)


ndef.Record.register_type(ChallengeRecord)
