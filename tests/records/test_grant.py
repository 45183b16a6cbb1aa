from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from nfcpay.errors import DecodeError
from nfcpay.records import GrantRecord, encode_message
from nfcpay.records.samples import encoded_sizes, sample_records
from tests.support.vectors import RecordVectors

AUTH = b"\x11" * 32
CARD = "990077000000000"
MINIMAL = {
    "grant_id": "g_1",
    "virtual_card_number": CARD,
    "issuing_terminal": "t_u",
    "allowed_terminal": "t_t",
    "usage_auth": AUTH,
    "currency": "KRW",
    "amount_cap": 1000,
    "remaining_amount": 1000,
}
HEAD = (
    "01 63675f31 02 6f393930303737303030303030303030 03 63745f75 04 63745f74 "
    f"05 5820{'11' * 32} 06 634b5257"
)
MINIMAL_HEX = f"01 a8 {HEAD} 07 1903e8 08 1903e8"
FULL = MINIMAL | {
    "max_uses": 3,
    "per_use_cap": 500,
    "valid_until": datetime(2026, 1, 1, tzinfo=UTC),
    "purposes": ["5812"],
    "regions": ["KR-11"],
    "merchants": ["m_1"],
    "bill_id": "b_1",
}
FULL_HEX = (
    f"01 af {HEAD} 07 1903e8 08 1903e8 09 03 0a 1901f4 0b 1a6955b900 "
    "0c 81 6435383132 0d 81 654b522d3131 0e 81 636d5f31 0f 63625f31"
)

#: A grant with an allowance is written in payload version 2; without one, still in 1.
ALLOWANCE = MINIMAL | {"allowance_period": "day", "allowance_amount": 500, "time_zone": "UTC"}
ALLOWANCE_HEX = f"02 ab {HEAD} 07 1903e8 08 1903e8 10 01 11 1901f4 12 63555443"


class TestGrantVectors(RecordVectors):
    cls = GrantRecord
    valid = [(MINIMAL_HEX, MINIMAL), (FULL_HEX, FULL), (ALLOWANCE_HEX, ALLOWANCE)]
    decode_errors = [
        (f"02 a8 {HEAD} 07 1903e8 08 1903e8", "version 2 does not fit .* written as version 1"),
        ("01" + ALLOWANCE_HEX[2:], "version 1 does not fit .* written as version 2"),
        (
            f"03 a8 {HEAD} 07 1903e8 08 1903e8",
            "version 3 is not supported: .* newer nfcpay .* upgrade nfcpay on the receiving",
        ),
        (f"02 a9 {HEAD} 07 1903e8 08 1903e8 10 01", "go together"),
        (f"02 ab {HEAD} 07 1903e8 08 1903e8 10 04 11 01 12 63555443", "unknown code 4"),
        (f"01 a8 {HEAD} 07 1903e8 08 1903e9", "remaining_amount 1001 exceeds amount_cap 1000"),
        (f"01 a8 {HEAD} 07 fb408f400000000000 08 00", "amount_cap must be an integer .* not float"),
        (f"01 a8 {HEAD} 07 f5 08 00", "amount_cap must be an integer .* not bool"),
        (f"01 a8 {HEAD} 07 1903e8 08 20", r"remaining_amount is -1, must be 0\.\."),
        (f"01 a8 {HEAD} 07 00 08 00", r"amount_cap is 0, must be 1\.\."),
        (f"01 a7 {HEAD} 07 1903e8", "grant is missing remaining_amount"),
        (
            MINIMAL_HEX.replace("634b5257", "6358595a"),
            "grant.currency: unknown currency 'XYZ'",
        ),
        (f"01 a9 {HEAD} 07 1903e8 08 1903e8 09 00", r"max_uses is 0, must be 1\.\."),
        (f"01 a9 {HEAD} 07 1903e8 08 1903e8 09 01", "not in canonical CBOR form"),
        (f"01 a9 {HEAD} 07 1903e8 08 1903e8 0c 80", "not in canonical CBOR form"),
        (f"01 a9 {HEAD} 07 1903e8 08 1903e8 0a 1903e9", "per_use_cap 1001 exceeds amount_cap"),
        (f"01 a9 {HEAD} 07 1903e8 08 1903e8 0b 6131", "valid_until must be unix seconds, not str"),
        (f"01 a9 {HEAD} 07 1903e8 08 1903e8 0b 00", r"valid_until is 0 unix seconds"),
        (f"01 a9 {HEAD} 07 1903e8 08 1903e8 0c 6131", "purposes must be a CBOR array, not str"),
        (f"01 a9 {HEAD} 07 1903e8 08 1903e8 0c 82 6131 6131", "same value twice"),
        (f"01 a9 {HEAD} 07 1903e8 08 1903e8 0c 81 01", r"purposes\[0\] must be a short code"),
        (f"01 a9 {HEAD} 07 1903e8 08 1903e8 0c 81 6120", r"purposes\[0\] must be a short code"),
        (f"01 a9 {HEAD} 07 1903e8 08 1903e8 0e 81 63675f31", r"merchants\[0\] must be an id"),
        (f"01 a9 {HEAD} 07 1903e8 08 1903e8 0c 89" + "6131" * 9, "9 items, at most 8"),
        (MINIMAL_HEX.replace("6f3939", "6f3961"), "virtual_card_number must be a card number"),
        ("01" + "40" * 2100, "payload length can not be more than 2048"),
    ]
    init_errors = [
        (MINIMAL | {"amount_cap": 10.0}, "amount_cap must be an integer .* not float"),
        (MINIMAL | {"amount_cap": True}, "amount_cap must be an integer .* not bool"),
        (MINIMAL | {"remaining_amount": -1}, r"remaining_amount is -1"),
        (MINIMAL | {"amount_cap": 10**16}, r"amount_cap is 10000000000000000"),
        (MINIMAL | {"usage_auth": AUTH[:31]}, "usage_auth must be 32 bytes, got 31"),
        (MINIMAL | {"grant_id": "x_1"}, r"grant.grant_id must be an id like g_…"),
        (MINIMAL | {"grant_id": "g_" + "a" * 33}, "35 characters, at most 34"),
        (MINIMAL | {"currency": "krw"}, "unknown currency"),
        (MINIMAL | {"currency": None}, "currency must be a currency code, not null"),
        (MINIMAL | {"valid_until": datetime(2026, 1, 1)}, "naive datetime"),
        (MINIMAL | {"valid_until": "2026-01-01"}, "must be a datetime, not str"),
        (MINIMAL | {"valid_until": datetime(1969, 1, 1, tzinfo=UTC)}, "out of range"),
        (MINIMAL | {"purposes": "5812"}, "purposes must be a list, not str"),
        (MINIMAL | {"purposes": ["a"] * 2}, "same value twice"),
        (MINIMAL | {"per_use_cap": 0}, r"per_use_cap is 0"),
        (MINIMAL | {"remaining_amount": 1001}, "exceeds amount_cap"),
        (ALLOWANCE | {"allowance_amount": 1001}, "allowance_amount 1001 exceeds amount_cap"),
        (ALLOWANCE | {"allowance_period": "year"}, "must be one of day, week, month"),
        (ALLOWANCE | {"time_zone": "Asia/Seoul;x"}, "must be an IANA time zone name"),
        (ALLOWANCE | {"time_zone": None}, "go together"),
    ]


def test_a_target_on_an_older_nfcpay_is_told_to_upgrade_for_an_allowance() -> None:
    """nfcpay before allowances reads grant payload version 1 only: a grant with an
    allowance is refused there with the sentence naming the side to upgrade, never half-read
    without its limit. A grant without one still reaches it."""

    class BeforeAllowances(GrantRecord):
        version = 1
        oldest_version = 1

    with pytest.raises(DecodeError) as caught:
        BeforeAllowances._decode_payload(GrantRecord(**ALLOWANCE).payload, "strict")
    assert caught.value.code == "unsupported_version"
    assert "upgrade nfcpay on the receiving terminal" in caught.value.message
    plain = BeforeAllowances._decode_payload(GrantRecord(**MINIMAL).payload, "strict")
    assert plain.amount_cap == 1000


def test_time_is_normalised_to_whole_utc_seconds() -> None:
    seoul = timezone(timedelta(hours=9))
    grant = GrantRecord(**MINIMAL, valid_until=datetime(2026, 1, 1, 9, 0, 0, 999, tzinfo=seoul))
    assert grant.valid_until == datetime(2026, 1, 1, tzinfo=UTC)
    assert grant.valid_until.tzinfo is UTC


def test_realistic_grant_record_is_at_most_200_bytes() -> None:
    grant = sample_records()["grant"]
    assert isinstance(grant, GrantRecord)
    assert len(grant.grant_id) == 18 and len(grant.virtual_card_number) == 16
    assert len(grant.purposes) == 2 and grant.valid_until is not None
    size = len(encode_message([grant]))
    assert size == encoded_sizes()["grant"] <= 200


def test_largest_grant_still_encodes() -> None:
    fields = MINIMAL | {
        "grant_id": "g_" + "a" * 32,
        "virtual_card_number": "9" * 19,
        "issuing_terminal": "t_" + "b" * 32,
        "allowed_terminal": "t_" + "c" * 32,
        "amount_cap": 10**15,
        "remaining_amount": 10**15,
        "max_uses": 1_000_000,
        "per_use_cap": 10**15,
        "valid_until": datetime(2200, 1, 1, tzinfo=UTC),
        "purposes": [f"{i}" + "p" * 31 for i in range(8)],
        "regions": [f"{i}" + "r" * 31 for i in range(8)],
        "merchants": [f"m_{i}" + "m" * 31 for i in range(8)],
        "bill_id": "b_" + "d" * 32,
    }
    assert len(encode_message([GrantRecord(**fields)])) < 2048
