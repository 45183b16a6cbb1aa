"""``nfcpay.org:ack``: "accepted" or "refused, because ..." in any flow.

The target terminal acknowledges a grant with it; any terminal refuses a request with it
(``accepted=False`` and a machine-readable ``code``) instead of dropping the link.

>>> from nfcpay.records import AckRecord, decode_one, encode_message
>>> ack = AckRecord(accepted=True, ref="g_3fz7q2m4k9xw6a5b")
>>> octets = encode_message([ack])
>>> len(octets), decode_one(octets, AckRecord) == ack
(41, True)
>>> AckRecord(accepted=False, code="terminal_not_allowed").code
'terminal_not_allowed'
"""

from __future__ import annotations

import ndef

from nfcpay.errors import EncodeError
from nfcpay.records.base import NfcpayRecord, record_type, wire_struct
from nfcpay.records.fields import MESSAGE, TOKEN, Flag, Text, wire

#: Any nfcpay id (``g_…``, ``b_…``, ``p_…``): what is being acknowledged.
ANY_ID = Text(r"[a-z]{1,3}_[a-z0-9]{1,32}", 36, "an nfcpay id")


@wire_struct
class AckRecord(NfcpayRecord):
    """Accepted or refused; ``ref`` names what it answers, ``code`` says why it refused."""

    _type = record_type("ack")
    _decode_max_payload_length = 1024

    accepted: bool = wire(1, Flag())
    ref: str | None = wire(2, ANY_ID, default=None)
    code: str | None = wire(3, TOKEN, default=None)
    message: str = wire(4, MESSAGE, default="")

    def _check(self) -> None:
        if self.accepted and self.code is not None:
            raise EncodeError("ack: an acceptance has no code")
        if not self.accepted and self.code is None:
            raise EncodeError("ack: a refusal needs a code")


ndef.Record.register_type(AckRecord)
