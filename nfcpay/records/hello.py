"""``nfcpay.org:hello``: a terminal introduces itself at the start of a tap.

The target terminal sends it to the user terminal, which checks that the grant it is about
to hand over is bound to this terminal and this key.

>>> from nfcpay.records import HelloRecord, decode_one, encode_message
>>> hello = HelloRecord(
...     terminal_id="t_k7x2m4q9w3b5n8c6", role="target", key_fingerprint=bytes.fromhex("9f3a"*4)
... )
>>> hello.role
<Role.TARGET: 'target'>
>>> octets = encode_message([hello])
>>> len(octets), decode_one(octets, HelloRecord) == hello
(53, True)
"""

from __future__ import annotations

import enum

import ndef

from nfcpay.records.base import NfcpayRecord, record_type, wire_struct
from nfcpay.records.fields import Binary, Choice, identifier, wire


class Role(enum.StrEnum):
    """What a terminal does in the protocol."""

    USER = "user"
    TARGET = "target"
    MERCHANT = "merchant"


ROLE = Choice(Role, {"user": 1, "target": 2, "merchant": 3})


@wire_struct
class HelloRecord(NfcpayRecord):
    """Terminal id, role, the first 8 bytes of SHA-256 of its public key, optional nonce."""

    _type = record_type("hello")
    _decode_max_payload_length = 128

    terminal_id: str = wire(1, identifier("t"))
    role: Role = wire(2, ROLE)
    key_fingerprint: bytes = wire(3, Binary(8, 8))
    nonce: bytes | None = wire(4, Binary(8, 32), default=None)


ndef.Record.register_type(HelloRecord)
