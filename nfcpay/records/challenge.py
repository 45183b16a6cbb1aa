"""``nfcpay.org:challenge``: the merchant asks the target terminal to pay.

The fresh ``nonce`` is what the target signs (with the amount and the merchant) in its
payment means, so a copied means is useless at any other counter or a second time.

An *open* challenge names no amount: the target's person enters it (a donation box, a taxi
fare), up to the merchant's ``max_amount`` if it sets one, and the target signs it as the
sum of its means' shares (:func:`nfcpay.records.presentation.signed_amount`). Open
challenges are payload version 2; a challenge with an amount is still written as version 1,
so a target on an older nfcpay pays it as before and is told to upgrade only by an open one.

>>> from nfcpay.records import ChallengeRecord, decode_one, encode_message
>>> challenge = ChallengeRecord(
...     merchant_id="m_r2d5k8x3q7w4b9n6",
...     currency="KRW",
...     amount=12_000,
...     nonce=bytes(range(16)),
...     purpose="5812",
... )
>>> octets = encode_message([challenge])
>>> len(octets), decode_one(octets, ChallengeRecord) == challenge, challenge.payload[0]
(78, True, 1)
>>> donation = ChallengeRecord(
...     merchant_id="m_r2d5k8x3q7w4b9n6",
...     currency="KRW",
...     max_amount=50_000,
...     nonce=bytes(range(16)),
...     purpose="8398",
... )
>>> donation.is_open, donation.payload[0], donation.priced(12_000).amount
(True, 2, 12000)
"""

from __future__ import annotations

import dataclasses

import ndef

from nfcpay.errors import EncodeError
from nfcpay.records.base import NfcpayRecord, record_type, wire_struct
from nfcpay.records.fields import TOKEN, Binary, Currency, amount, identifier, wire

#: The payload version of an open challenge (one without an amount).
OPEN_VERSION = 2
_AMOUNT = amount()


@wire_struct
class ChallengeRecord(NfcpayRecord):
    """Merchant, amount (none: open, the target enters it, at most ``max_amount``), optional
    purpose (category code) and bill, and a 16-32 byte nonce.

    A ``max_amount`` needs an open challenge, and a bill needs an amount: a group bill is
    paid for the total the merchant charges."""

    _type = record_type("challenge")
    version = OPEN_VERSION
    oldest_version = 1
    _decode_max_payload_length = 256

    merchant_id: str = wire(1, identifier("m"))
    currency: str = wire(2, Currency())
    amount: int | None = wire(3, _AMOUNT, default=None)
    nonce: bytes = wire(4, Binary(16, 32))
    purpose: str | None = wire(5, TOKEN, default=None)
    bill_id: str | None = wire(6, identifier("b"), default=None)
    max_amount: int | None = wire(7, _AMOUNT, default=None)

    @property
    def is_open(self) -> bool:
        """Whether the target enters the amount."""
        return self.amount is None

    @property
    def fixed_amount(self) -> int:
        """The amount asked; ValueError for an open challenge (see :meth:`priced`)."""
        if self.amount is None:
            raise ValueError("an open challenge has no amount until the target enters one")
        return self.amount

    def priced(self, amount: int) -> ChallengeRecord:
        """This open challenge with the amount the target entered: what the target pays and
        signs, and what the merchant charges (never sent over NFC)."""
        if not self.is_open:
            raise ValueError("only an open challenge is priced by the target")
        return dataclasses.replace(self, amount=amount, max_amount=None)

    def payload_version(self) -> int:
        return OPEN_VERSION if self.is_open else 1

    def _check(self) -> None:
        if self.max_amount is not None and not self.is_open:
            raise EncodeError("challenge.max_amount is for open challenges (no amount) only")
        if self.bill_id is not None and self.is_open:
            raise EncodeError("challenge.bill_id needs an amount: a bill is not paid open")


ndef.Record.register_type(ChallengeRecord)
