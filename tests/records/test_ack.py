from __future__ import annotations

from nfcpay.records import AckRecord
from tests.support.vectors import RecordVectors


class TestAckVectors(RecordVectors):
    cls = AckRecord
    valid = [
        ("01 a1 01 f5", {"accepted": True}),
        ("01 a2 01 f5 02 63675f31", {"accepted": True, "ref": "g_1"}),
        (
            "01 a3 01 f4 03 6462757379 04 69747279206167 61696e",
            {"accepted": False, "code": "busy", "message": "try again"},
        ),
    ]
    decode_errors = [
        ("01 a1 01 f4", "a refusal needs a code"),
        ("01 a2 01 f5 03 6462757379", "an acceptance has no code"),
        ("01 a2 01 f5 02 63585f31", "ref must be an nfcpay id"),
        ("01 a2 01 f5 04 60", "not in canonical CBOR form"),
        ("01 a1 01 f6", "accepted must be true or false, not null"),
        ("01 f5", "ack must be a CBOR map, not bool"),
    ]
    init_errors = [
        ({"accepted": False}, "a refusal needs a code"),
        ({"accepted": True, "code": "x"}, "an acceptance has no code"),
        ({"accepted": "yes"}, "true or false, not str"),
        ({"accepted": False, "code": "x", "message": "\ud800"}, "got U\\+D800"),
        ({"accepted": False, "code": "x", "message": "pay \u202e01"}, "got U\\+202E"),
    ]
