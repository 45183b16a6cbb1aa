"""The Type 3 mailbox state machine, driven through nfcpy's block callbacks."""

from __future__ import annotations

import pytest

from nfcpay import errors
from nfcpay.transport.mailbox import WRITE_BUSY, Mailbox, attribute_block, parse_attribute_block


def attributes(box: Mailbox) -> tuple[int, int, int, int, int]:
    return parse_attribute_block(box.read_block(0, True, True))


def reader_writes(box: Mailbox, message: bytes) -> None:
    assert box.write_block(0, attribute_block(12, 12, 255, WRITE_BUSY, 0), True, True)
    padded = message + bytes(-len(message) % 16)
    for n in range(len(padded) // 16):
        assert box.write_block(n + 1, padded[16 * n : 16 * n + 16], True, True)
    assert box.write_block(0, attribute_block(12, 12, 255, 0, len(message)), True, True)


def test_starts_busy_then_offers_the_published_message_once():
    box = Mailbox(12, 12)
    assert attributes(box)[3] == WRITE_BUSY
    box.publish(b"a" * 40)
    assert attributes(box)[3:] == (0, 40)
    assert not box.delivered
    data = b"".join(box.read_block(n, True, True) for n in (1, 2, 3))
    assert data[:40] == b"a" * 40
    assert box.delivered
    assert attributes(box)[3] == WRITE_BUSY


def test_reader_write_lands_only_when_complete():
    box = Mailbox(12, 12)
    box.write_block(0, attribute_block(12, 12, 255, WRITE_BUSY, 0), True, True)
    box.write_block(1, b"x" * 16, True, True)
    assert box.take() is None
    assert box.write_in_progress
    box.write_block(0, attribute_block(12, 12, 255, 0, 16), True, True)
    assert box.take() == b"x" * 16
    assert box.take() is None


def test_full_round_trip():
    box = Mailbox(12, 12)
    reader_writes(box, b"hello reader" * 20)
    assert box.take() == b"hello reader" * 20
    assert attributes(box)[3] == WRITE_BUSY


@pytest.mark.parametrize(
    "block",
    [
        attribute_block(12, 12, 255, 0, 5000),  # longer than the tag
        attribute_block(12, 12, 255, 0, 0),  # empty message
        b"\x10" + bytes(15),  # bad checksum
    ],
)
def test_bad_final_attribute_write_is_refused(block):
    box = Mailbox(12, 12)
    box.write_block(0, attribute_block(12, 12, 255, WRITE_BUSY, 0), True, True)
    assert box.write_block(0, block, True, True) is False
    assert box.take() is None


def test_data_write_without_write_flag_is_refused():
    assert Mailbox(12, 12).write_block(1, b"x" * 16, True, True) is False


def test_out_of_range_blocks():
    box = Mailbox(12, 12, nmaxb=4)
    assert box.read_block(5, True, True) is None
    with pytest.raises(ValueError):
        box.publish(b"x" * 65)


def test_corrupt_attribute_block_is_a_protocol_violation():
    with pytest.raises(errors.ProtocolViolation):
        parse_attribute_block(bytes(16)[:-1] + b"\x01")
    with pytest.raises(errors.ProtocolViolation):
        parse_attribute_block(attribute_block(1, 1, 1, 0, 0).replace(b"\x10", b"\x20", 1))
