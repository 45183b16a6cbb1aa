from __future__ import annotations

from nfcpay.records import ChallengeRecord
from tests.support.vectors import RecordVectors

NONCE = b"\x55" * 16
BASE = {"merchant_id": "m_1", "currency": "KRW", "amount": 12_000, "nonce": NONCE}
BASE_HEX = f"01 636d5f31 02 634b5257 03 192ee0 04 50{'55' * 16}"


class TestChallengeVectors(RecordVectors):
    cls = ChallengeRecord
    valid = [
        (f"01 a4 {BASE_HEX}", BASE),
        (
            f"01 a6 {BASE_HEX} 05 6435383132 06 63625f31",
            BASE | {"purpose": "5812", "bill_id": "b_1"},
        ),
        (
            f"01 a4 01 636d5f31 02 635553440319 04d2 04 5820{'ab' * 32}",
            BASE | {"currency": "USD", "amount": 1234, "nonce": b"\xab" * 32},
        ),
    ]
    decode_errors = [
        (f"01 a4 01 636d5f31 02 634b5257 03 192ee0 04 4f{'55' * 15}", "nonce must be 16-32 bytes"),
        (f"01 a4 01 636d5f31 02 634b5257 03 00 04 50{'55' * 16}", r"amount is 0, must be 1\.\."),
        (f"01 a4 01 636d5f31 02 634b5257 03 6131 04 50{'55' * 16}", "amount must be an integer"),
        (f"01 a5 {BASE_HEX} 05 f6", "not in canonical CBOR form"),
        (f"01 a5 {BASE_HEX} 05 7821{'41' * 33}", "purpose is 33 characters, at most 32"),
        (f"01 a5 {BASE_HEX} 06 636d5f31", r"bill_id must be an id like b_…"),
        (f"01 a3 {BASE_HEX[:-38]}", "missing nonce"),
    ]
    init_errors = [
        (BASE | {"nonce": NONCE * 3}, "nonce must be 16-32 bytes, got 48"),
        (BASE | {"amount": 0}, "amount is 0"),
        (BASE | {"purpose": "5812 "}, "purpose must be a short code"),
        (BASE | {"merchant_id": "t_1"}, "an id like m_…"),
    ]
