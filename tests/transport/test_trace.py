"""The trace file's rules: what redaction masks, checksums kept valid, versions refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nfcpay.errors import ConfigError
from nfcpay.transport.trace import MASK, Frame, _pieces, _pn533_frame, load, matches, redact

SECRET = bytes(range(100, 132))


@given(
    before=st.binary(max_size=40),
    after=st.binary(max_size=40),
    cut=st.integers(min_value=4, max_value=len(SECRET)),
    from_end=st.booleans(),
)
def test_no_four_bytes_of_a_secret_survive_whole_or_cut(
    before: bytes, after: bytes, cut: int, from_end: bool
) -> None:
    piece = SECRET[-cut:] if from_end else SECRET[:cut]
    frame = before + piece + after
    pieces = _pieces({SECRET})
    spans = redact(frame, pieces)
    masked = bytearray(frame)
    for start, end in spans:
        masked[start:end] = bytes([MASK]) * (end - start)
    assert not any(bytes(masked[i : i + 4]) in pieces for i in range(len(masked) - 3))
    assert len(masked) == len(frame) and masked.startswith(before[: spans[0][0]])


def test_a_pn533_frame_keeps_a_valid_checksum_after_masking() -> None:
    data = b"\xd4\x40\x01" + SECRET
    frame = b"\x00\x00\xff" + bytes([len(data), -len(data) & 0xFF]) + data + b"\x00\x00"
    refitted = _pn533_frame(frame)
    assert (sum(refitted[5:-1]) & 0xFF) == 0  # data + DCS sum to zero, as the chip checks
    assert _pn533_frame(b"\x00\x00\xff\x00\xff\x00") == b"\x00\x00\xff\x00\xff\x00"  # ACK


def test_a_masked_answer_is_compared_up_to_its_first_masked_byte() -> None:
    expected = Frame(0.0, "in", b"\xd5\x41\x00" + b"\x5a" * 4 + b"\x01", ((3, 7),))
    assert matches(expected, b"\xd5\x41\x00" + SECRET[:4] + b"\x99")
    assert not matches(expected, b"\xd5\x41\x01" + SECRET[:4] + b"\x99")
    assert not matches(expected, b"\xd5\x41\x00" + SECRET[:4])
    assert matches(Frame(0.0, "in", b"\x01"), b"\x01") and not matches(Frame(0, "in", b"\x01"), b"")


def test_a_trace_of_another_version_says_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"trace": "nfcpay", "version": 2}) + "\n")
    with pytest.raises(ConfigError, match="upgrade nfcpay"):
        load(path)
    path.write_text("not json\n")
    with pytest.raises(ConfigError, match="not an nfcpay trace"):
        load(path)
