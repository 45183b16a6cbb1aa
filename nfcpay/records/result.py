"""``nfcpay.org:result``: the merchant tells the target terminal how the payment went.

>>> from nfcpay.records import ResultRecord, decode_one, encode_message
>>> approved = ResultRecord(
...     approved=True, currency="KRW", amount=12_000,
...     payment_id="p_w8c3n6q2k5x9m4b7", approval_code="A7K2Q9",
... )
>>> declined = ResultRecord(
...     approved=False, currency="KRW", amount=12_000,
...     decline_code="over_per_use_cap", message="the grant allows 10,000 KRW per use",
... )
>>> octets = encode_message([approved])
>>> len(octets), decode_one(octets, ResultRecord) == approved
(61, True)
>>> decode_one(encode_message([declined]), ResultRecord).decline_code
'over_per_use_cap'
"""

from __future__ import annotations

import ndef

from nfcpay.errors import EncodeError
from nfcpay.records.base import NfcpayRecord, record_type, wire_struct
from nfcpay.records.fields import MESSAGE, TOKEN, Currency, Flag, amount, identifier, wire


@wire_struct
class ResultRecord(NfcpayRecord):
    """Approved (with payment id and approval code) or declined (with a decline code).

    ``amount`` is the amount that was asked for, approved or not; ``message`` is for people.
    """

    _type = record_type("result")
    _decode_max_payload_length = 1024

    approved: bool = wire(1, Flag())
    currency: str = wire(2, Currency())
    amount: int = wire(3, amount(0))
    payment_id: str | None = wire(4, identifier("p"), default=None)
    approval_code: str | None = wire(5, TOKEN, default=None)
    decline_code: str | None = wire(6, TOKEN, default=None)
    message: str = wire(7, MESSAGE, default="")

    def _check(self) -> None:
        if self.approved:
            if self.payment_id is None or self.approval_code is None:
                raise EncodeError("result: an approval needs payment_id and approval_code")
            if self.decline_code is not None:
                raise EncodeError("result: an approval has no decline_code")
        else:
            if self.decline_code is None:
                raise EncodeError("result: a decline needs decline_code")
            if self.payment_id is not None or self.approval_code is not None:
                raise EncodeError("result: a decline has no payment_id or approval_code")


ndef.Record.register_type(ResultRecord)
