from __future__ import annotations

from nfcpay.records import HelloRecord, Role
from tests.support.vectors import RecordVectors

FP = bytes(range(8))
FP_HEX = "0001020304050607"


class TestHelloVectors(RecordVectors):
    cls = HelloRecord
    valid = [
        (
            f"01 a3 01 63745f61 02 03 03 48{FP_HEX}",
            {"terminal_id": "t_a", "role": Role.MERCHANT, "key_fingerprint": FP},
        ),
        (
            f"01 a4 01 63745f61 02 01 03 48{FP_HEX} 04 48{'ff' * 8}",
            {"terminal_id": "t_a", "role": "user", "key_fingerprint": FP, "nonce": b"\xff" * 8},
        ),
    ]
    decode_errors = [
        ("02 a0", "hello payload version 2 is not supported"),
        ("00 a0", "hello payload version 0 is not supported"),
        (f"01 a3 01 63745f61 02 07 03 48{FP_HEX}", "hello.role has unknown code 7"),
        (f"01 a3 01 63745f61 02 f5 03 48{FP_HEX}", "hello.role has unknown code True"),
        ("01 a2 01 63745f61 02 03", "hello is missing key_fingerprint"),
        ("01 a0", "hello is missing terminal_id, role, key_fingerprint"),
        (f"01 a4 01 63745f61 02 03 03 48{FP_HEX} 05 00", "hello has an unknown key 5"),
        (f"01 a4 01 63745f61 02 03 03 48{FP_HEX} 61 78 00", "hello has an unknown key 'x'"),
        (f"01 a3 01 43745f61 02 03 03 48{FP_HEX}", r"terminal_id must be an id .*, not bytes"),
        ("01 a3 01 63745f61 02 03 03 47 00010203040506", "key_fingerprint must be 8 bytes, got 7"),
        (f"01 a3 02 03 01 63745f61 03 48{FP_HEX}", "not in canonical CBOR form"),
        (f"01 a3 01 63745f61 02 1803 03 48{FP_HEX}", "not in canonical CBOR form"),
        (f"01 a3 01 63745f61 02 03 03 48{FP_HEX} 00", "1 bytes after the CBOR map"),
        ("01 80", "hello must be a CBOR map, not list"),
        ("01 a3 01 7f", "hello payload is not valid CBOR"),
        (f"01 a3 01 63745f61 01 63745f61 03 48{FP_HEX}", "not valid CBOR"),
        (f"01 a3 01 63745f61 02 c1 03 03 48{FP_HEX}", "not valid CBOR"),
        ("01 bf ff", "not valid CBOR"),
        ("01", "payload length can not be less than 2"),
        ("01" + "40" * 200, "payload length can not be more than 128"),
    ]
    init_errors = [
        ({"terminal_id": "g_a", "role": "user", "key_fingerprint": FP}, r"an id like t_…"),
        ({"terminal_id": "t_A", "role": "user", "key_fingerprint": FP}, r"an id like t_…"),
        ({"terminal_id": "t_a", "role": "admin", "key_fingerprint": FP}, "role must be one of"),
        ({"terminal_id": "t_a", "role": "user", "key_fingerprint": FP[:7]}, "8 bytes, got 7"),
        ({"terminal_id": "t_a", "role": "user", "key_fingerprint": "ab"}, "bytes, not str"),
        (
            {"terminal_id": "t_a", "role": "user", "key_fingerprint": FP, "nonce": b"1"},
            "nonce must be 8-32 bytes, got 1",
        ),
    ]
