"""Property tests: every valid record survives encode → decode, JSON and re-encoding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfcpay.records import RECORD_CLASSES, NfcpayRecord, decode_message, decode_one, encode_message
from tests.support.strategies import RECORDS, any_record


def test_every_record_class_has_a_strategy() -> None:
    assert set(RECORDS) == set(RECORD_CLASSES)


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_round_trip(name: str) -> None:
    cls = RECORD_CLASSES[name]

    @settings(max_examples=150, deadline=None)
    @given(RECORDS[name])
    def check(record: NfcpayRecord) -> None:
        octets = encode_message([record])
        decoded = decode_one(octets, cls)
        assert decoded == record
        assert decoded.payload == record.payload
        assert encode_message([decoded]) == octets
        assert cls.from_json(record.to_json(reveal=True)) == record

    check()


@settings(max_examples=100, deadline=None)
@given(st.lists(any_record, min_size=1, max_size=4))
def test_multi_record_messages_round_trip(records: list[NfcpayRecord]) -> None:
    assert decode_message(encode_message(records)) == records
