"""Table-driven codec tests shared by every record type.

A subclass sets ``cls`` and three tables:

* ``valid``: (payload hex, constructor fields) — decoded AND re-encoded, so every decode
  vector is also an encode vector;
* ``decode_errors``: (payload hex, regex the DecodeError message must match);
* ``init_errors``: (constructor fields, regex the EncodeError message must match).

Payload hex may contain spaces to show the CBOR structure.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from nfcpay.errors import DecodeError, EncodeError
from nfcpay.records import NfcpayRecord, decode_one, encode_message
from tests.support.records import framed as framed_payload


def framed(cls: type[NfcpayRecord], payload_hex: str) -> bytes:
    """A one-record NDEF message of ``cls``'s type around an arbitrary payload (hex)."""
    return framed_payload(cls.type_name, bytes.fromhex(payload_hex))


class RecordVectors:
    cls: ClassVar[type[NfcpayRecord]]
    valid: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    decode_errors: ClassVar[list[tuple[str, str]]] = []
    init_errors: ClassVar[list[tuple[dict[str, Any], str]]] = []

    def test_decode(self, valid: tuple[str, dict[str, Any]]) -> None:
        payload_hex, fields = valid
        record = decode_one(framed(self.cls, payload_hex), self.cls)
        assert record == self.cls(**fields)
        for name, value in fields.items():
            assert getattr(record, name) == (tuple(value) if isinstance(value, list) else value)

    def test_encode(self, valid: tuple[str, dict[str, Any]]) -> None:
        payload_hex, fields = valid
        record = self.cls(**fields)
        assert record.payload.hex() == payload_hex.replace(" ", "")
        assert encode_message([record]) == framed(self.cls, payload_hex)

    def test_decode_error(self, decode_error: tuple[str, str]) -> None:
        payload_hex, message = decode_error
        with pytest.raises(DecodeError, match=message):
            decode_one(framed(self.cls, payload_hex))

    def test_init_error(self, init_error: tuple[dict[str, Any], str]) -> None:
        fields, message = init_error
        with pytest.raises(EncodeError, match=message):
            self.cls(**fields)

    def test_is_immutable(self) -> None:
        payload_hex, fields = self.valid[0]
        record = self.cls(**fields)
        name = next(iter(fields))
        with pytest.raises(AttributeError):
            setattr(record, name, fields[name])
        assert record.payload.hex() == payload_hex.replace(" ", "")
