"""Field kinds and the struct machinery, beyond what the per-record vectors reach."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfcpay.errors import DecodeError, EncodeError
from nfcpay.records import RECORD_CLASSES, GrantRecord, MeansRecord, encode_message
from nfcpay.records.base import NfcpayRecord, record_type, wire_struct
from nfcpay.records.fields import MESSAGE, TOKEN, wire
from nfcpay.records.samples import sample_records

GRANT_JSON = sample_records()["grant"].to_json(reveal=True)
MEANS_JSON = sample_records()["means"].to_json(reveal=True)


@pytest.mark.parametrize(
    ("cls", "data", "message"),
    [
        (GrantRecord, [], "grant must be a JSON object, not list"),
        (GrantRecord, GRANT_JSON | {"usage_auth": 5}, "usage_auth must be a hex string, not int"),
        (GrantRecord, GRANT_JSON | {"usage_auth": "zz"}, "usage_auth is not hex"),
        (GrantRecord, GRANT_JSON | {"valid_until": 5}, "must be an ISO 8601 time, not int"),
        (GrantRecord, GRANT_JSON | {"valid_until": "2026-13-01"}, "not an ISO 8601 time"),
        (GrantRecord, GRANT_JSON | {"purposes": "5812"}, "purposes must be a list, not str"),
        (GrantRecord, GRANT_JSON | {"amount_cap": 1.5}, "amount_cap must be an integer"),
        (GrantRecord, GRANT_JSON | {"amount_cap": None}, "grant is missing amount_cap"),
        (MeansRecord, MEANS_JSON | {"grants": [1]}, r"grants\[0\] must be a JSON object, not int"),
        (MeansRecord, MEANS_JSON | {"grants": [{}]}, r"grants\[0\] is missing grant_id"),
    ],
)
def test_from_json_errors_are_decode_errors(
    cls: type[NfcpayRecord], data: object, message: str
) -> None:
    with pytest.raises(DecodeError, match=message):
        cls.from_json(data)


def test_to_json_shortens_secrets_unless_revealed() -> None:
    means = sample_records()["means"]
    shown = means.to_json()
    assert shown["signature"] == "0000…(64 bytes)"
    assert shown["grants"][0]["usage_auth"] == "0000…(32 bytes)"
    assert means.to_json(reveal=True)["signature"] == "00" * 64


@wire_struct
class Note(NfcpayRecord):
    """A record type that is never registered with ndeflib: for limits only."""

    _type = record_type("note")
    _decode_max_payload_length = 16

    text: str = wire(1, MESSAGE)


def test_a_payload_over_its_record_limit_cannot_be_built() -> None:
    assert Note(text="short").type_name == "note"
    with pytest.raises(EncodeError, match="note payload is 31 bytes, at most 16"):
        Note(text="x" * 26)


def test_a_message_over_the_size_limit_cannot_be_built() -> None:
    notes = [Note(text="x" * 8) for _ in range(16)]
    assert len(encode_message(notes)) < 4096
    fat = dataclasses.replace(
        sample_records()["grant"],
        merchants=[f"m_{i}" + "a" * 31 for i in range(8)],
        regions=[f"{i}" + "r" * 31 for i in range(8)],
        purposes=[f"{i}" + "p" * 31 for i in range(8)],
    )
    with pytest.raises(EncodeError, match=r"message is \d+ bytes, at most 4096"):
        encode_message([fat] * 5)


def test_duplicate_wire_keys_are_a_programming_error() -> None:
    with pytest.raises(TypeError, match="duplicate or negative wire keys"):

        @wire_struct
        class Twice(NfcpayRecord):
            _type = record_type("twice")
            one: str = wire(1, TOKEN)
            two: str = wire(1, TOKEN)


#: Strings that once broke something: a lone surrogate, times at the edges of datetime.
TRICKY = ["\ud800", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "00" * 32]
json_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    json_leaves | st.sampled_from(TRICKY),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@pytest.mark.parametrize("name", sorted(RECORD_CLASSES))
def test_from_json_of_anything_builds_a_record_or_raises_decode_error(name: str) -> None:
    cls = RECORD_CLASSES[name]
    base = sample_records()[name].to_json(reveal=True)
    names = st.sampled_from(sorted(base))

    @settings(max_examples=60, deadline=None)
    @given(st.dictionaries(names, json_values, max_size=4), st.booleans())
    def check(changes: dict[str, object], start_empty: bool) -> None:
        data = changes if start_empty else base | changes
        try:
            record = cls.from_json(data)
        except DecodeError:
            return
        assert cls.from_json(record.to_json(reveal=True)) == record

    check()
