from __future__ import annotations

import pytest

from nfcpay.errors import DecodeError
from nfcpay.records import ChallengeRecord, decode_one
from tests.support.vectors import RecordVectors, framed

NONCE = b"\x55" * 16
BASE = {"merchant_id": "m_1", "currency": "KRW", "amount": 12_000, "nonce": NONCE}
BASE_HEX = f"01 636d5f31 02 634b5257 03 192ee0 04 50{'55' * 16}"
#: An open challenge: no amount (the target enters it); payload version 2.
OPEN = {"merchant_id": "m_1", "currency": "KRW", "nonce": NONCE}
OPEN_HEX = f"01 636d5f31 02 634b5257 04 50{'55' * 16}"


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
        (f"02 a3 {OPEN_HEX}", OPEN),
        (
            f"02 a5 {OPEN_HEX} 05 6438333938 07 19c350",
            OPEN | {"purpose": "8398", "max_amount": 50_000},
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
        # Each kind of challenge has exactly one version: no amount is version 2, else 1.
        (f"01 a3 {OPEN_HEX}", "version 1 does not fit its fields, which are written as version 2"),
        (f"02 a4 {BASE_HEX}", "version 2 does not fit its fields, which are written as version 1"),
        (f"02 a4 {OPEN_HEX} 07 00", r"max_amount is 0, must be 1\.\."),
        (f"01 a5 {BASE_HEX} 07 19c350", "max_amount is for open challenges"),
        (f"02 a4 {OPEN_HEX} 06 63625f31", "bill_id needs an amount"),
        (
            f"03 a3 {OPEN_HEX}",
            "challenge payload version 3 is not supported: it comes from a newer nfcpay than "
            r"the receiver's \(version 2\); upgrade nfcpay on the receiving terminal",
        ),
        (f"00 a4 {BASE_HEX}", "older nfcpay .*upgrade nfcpay on the sending terminal"),
    ]
    init_errors = [
        (BASE | {"nonce": NONCE * 3}, "nonce must be 16-32 bytes, got 48"),
        (BASE | {"amount": 0}, "amount is 0"),
        (BASE | {"purpose": "5812 "}, "purpose must be a short code"),
        (BASE | {"merchant_id": "t_1"}, "an id like m_…"),
        (BASE | {"max_amount": 20_000}, "max_amount is for open challenges"),
        (OPEN | {"bill_id": "b_1"}, "bill_id needs an amount"),
        (OPEN | {"max_amount": True}, "max_amount must be an integer amount"),
    ]


class ChallengeV1(ChallengeRecord):
    """The challenge as an nfcpay before open amounts reads it: version 1 only."""

    version = 1
    oldest_version = 1


def test_a_fixed_challenge_still_reads_on_a_target_before_open_amounts() -> None:
    fixed = ChallengeRecord(**BASE, purpose="5812")
    assert ChallengeV1._decode_payload(fixed.payload, "strict").payload == fixed.payload


def test_an_open_challenge_tells_a_target_before_open_amounts_to_upgrade() -> None:
    donation = ChallengeRecord(**OPEN, purpose="8398", max_amount=50_000)
    with pytest.raises(DecodeError) as caught:
        ChallengeV1._decode_payload(donation.payload, "strict")
    assert caught.value.code == "unsupported_version"
    assert caught.value.message.endswith("upgrade nfcpay on the receiving terminal")


def test_an_open_challenge_is_priced_with_the_amount_entered() -> None:
    donation = ChallengeRecord(**OPEN, purpose="8398", max_amount=50_000)
    priced = donation.priced(12_000)
    assert (priced.amount, priced.max_amount, priced.is_open, priced.payload[0]) == (
        12_000,
        None,
        False,
        1,
    )
    assert (priced.nonce, priced.purpose) == (donation.nonce, donation.purpose)
    with pytest.raises(ValueError, match="only an open challenge"):
        priced.priced(1)
    with pytest.raises(ValueError, match="no amount until the target enters one"):
        _ = donation.fixed_amount
    assert decode_one(framed(ChallengeRecord, donation.payload.hex())) == donation
