"""Whole messages: framing, expectations, limits, and ndeflib interplay."""

from __future__ import annotations

import dataclasses

import ndef
import pytest

from nfcpay.errors import DecodeError, EncodeError
from nfcpay.records import (
    MAX_MESSAGE_SIZE,
    MAX_RECORDS,
    AckRecord,
    ChallengeRecord,
    GrantRecord,
    HelloRecord,
    decode_message,
    decode_one,
    encode_message,
)
from nfcpay.records.samples import sample_records

SAMPLES = sample_records()
HELLO = SAMPLES["hello"]
GRANT = SAMPLES["grant"]
ACK = AckRecord(accepted=True)


def test_records_are_registered_with_ndeflib() -> None:
    octets = encode_message([HELLO, GRANT])
    assert list(ndef.message_decoder(octets)) == [HELLO, GRANT]
    assert b"".join(ndef.message_encoder([HELLO, GRANT])) == octets
    assert GRANT.type == "urn:nfc:ext:nfcpay.org:grant"
    assert GRANT.data == GRANT.payload


def test_type_names_are_lowercase_under_one_domain() -> None:
    for name, record in SAMPLES.items():
        assert record.type == f"urn:nfc:ext:nfcpay.org:{name}"
        assert record.type == record.type.lower()


def test_expect_accepts_a_class_or_a_tuple() -> None:
    octets = encode_message([GRANT, ACK])
    assert decode_message(octets, expect=(GrantRecord, AckRecord)) == [GRANT, ACK]
    with pytest.raises(DecodeError, match="record 2: expected grant, got ack"):
        decode_message(octets, expect=GrantRecord)
    with pytest.raises(DecodeError, match="expected hello or challenge, got grant"):
        decode_message(octets, expect=(HelloRecord, ChallengeRecord))


def test_decode_one_wants_exactly_one_record() -> None:
    assert decode_one(encode_message([GRANT]), GrantRecord) is not GRANT
    assert decode_one(encode_message([GRANT])) == GRANT
    with pytest.raises(DecodeError, match="expected one record, got 2"):
        decode_one(encode_message([GRANT, ACK]))
    with pytest.raises(DecodeError, match="expected challenge, got grant"):
        decode_one(encode_message([GRANT]), ChallengeRecord)


def test_empty_and_oversized_input() -> None:
    with pytest.raises(DecodeError, match="empty input"):
        decode_message(b"")
    with pytest.raises(DecodeError, match=f"at most {MAX_MESSAGE_SIZE}"):
        decode_message(b"\xd4" * (MAX_MESSAGE_SIZE + 1))


def test_foreign_records_are_refused() -> None:
    text = b"".join(ndef.message_encoder([ndef.TextRecord("hi")]))
    with pytest.raises(DecodeError, match="record 1 has type 'urn:nfc:wkt:T': not an nfcpay"):
        decode_message(text)
    mixed = b"".join(ndef.message_encoder([GRANT, ndef.Record("urn:nfc:ext:nfcpay.org:other")]))
    with pytest.raises(DecodeError, match="record 2 has type"):
        decode_message(mixed)


def test_trailing_bytes_and_non_canonical_headers_are_refused() -> None:
    octets = encode_message([ACK])
    with pytest.raises(DecodeError, match="3 bytes after the end of the NDEF message"):
        decode_message(octets + b"abc")
    long_form = bytes([octets[0] & ~0x10, octets[1], 0, 0, 0]) + octets[2:]
    assert list(ndef.message_decoder(long_form)) == [ACK]
    with pytest.raises(DecodeError, match="not in canonical form"):
        decode_message(long_form)


def test_a_record_id_is_refused() -> None:
    generic = ndef.Record(ACK.type, "id", ACK.payload)
    with pytest.raises(DecodeError, match="ack records carry no NDEF record ID"):
        decode_message(b"".join(ndef.message_encoder([generic])))
    with pytest.raises(ValueError, match="carry no NDEF record ID"):
        ACK.name = "x"
    ACK.name = ""
    assert ACK.name == ""


def test_framing_errors_from_ndeflib_become_decode_errors() -> None:
    first, second = encode_message([GRANT]), encode_message([ACK])
    with pytest.raises(DecodeError, match="MB flag set in middle record"):
        decode_message(bytes([first[0] & ~0x40]) + first[1:] + second)
    with pytest.raises(DecodeError, match="ME flag not set"):
        decode_message(bytes([first[0] & ~0x40]) + first[1:])
    with pytest.raises(DecodeError, match="MB flag not set"):
        decode_message(bytes([first[0] & ~0x80]) + first[1:])


def test_too_many_records() -> None:
    with pytest.raises(EncodeError, match=f"at most {MAX_RECORDS}"):
        encode_message([ACK] * (MAX_RECORDS + 1))
    octets = b"".join(ndef.message_encoder([ACK] * (MAX_RECORDS + 1)))
    with pytest.raises(DecodeError, match=f"at most {MAX_RECORDS}"):
        decode_message(octets)


def test_encode_refuses_nothing_and_non_records() -> None:
    with pytest.raises(EncodeError, match="at least one record"):
        encode_message([])
    with pytest.raises(TypeError, match="not an nfcpay record"):
        encode_message([ndef.TextRecord("hi")])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="octets must be bytes"):
        decode_message("d4")  # type: ignore[arg-type]


def test_records_compare_by_value_and_replace_revalidates() -> None:
    other = dataclasses.replace(GRANT, remaining_amount=10_000)
    assert other != GRANT and other.remaining_amount == 10_000
    assert dataclasses.replace(other, remaining_amount=50_000) == GRANT
    with pytest.raises(EncodeError, match="exceeds amount_cap"):
        dataclasses.replace(GRANT, remaining_amount=60_000)
    with pytest.raises(AttributeError):
        del GRANT.grant_id
