from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nfcpay import errors
from nfcpay.transport.framing import MAX_MESSAGE, Deframer, chunks, frame


@given(st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=4), st.integers(1, 300))
def test_any_chunking_reassembles_exactly(messages, size):
    wire = b"".join(frame(m) for m in messages)
    deframer = Deframer()
    out = [m for piece in chunks(wire, size) for m in deframer.feed(piece)]
    assert out == messages
    assert deframer.pending == 0


def test_incomplete_message_is_never_returned():
    deframer = Deframer()
    assert deframer.feed(frame(b"x" * 600)[:-1]) == []
    assert deframer.pending == 603


@pytest.mark.parametrize("length", [0, MAX_MESSAGE + 1, 0xFFFFFFFF])
def test_impossible_length_is_a_protocol_violation(length):
    with pytest.raises(errors.ProtocolViolation):
        Deframer().feed(length.to_bytes(4, "big") + b"junk")


@pytest.mark.parametrize("bad", [b"", b"x" * (MAX_MESSAGE + 1)])
def test_frame_rejects_empty_and_oversized(bad):
    with pytest.raises(ValueError):
        frame(bad)


def test_frame_rejects_text():
    with pytest.raises(TypeError):
        frame("text")  # type: ignore[arg-type]
