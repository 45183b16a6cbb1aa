"""Hand-made NFC payloads for fuzz and tamper tests."""

from __future__ import annotations

import ndef

from nfcpay.records.base import record_type


def framed(type_name: str, payload: bytes) -> bytes:
    """``payload`` in a well-formed NDEF record of type ``nfcpay.org:<type_name>``."""
    return b"".join(ndef.message_encoder([ndef.Record(record_type(type_name), "", payload)]))
