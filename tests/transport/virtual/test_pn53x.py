"""The PN53x chip core (nfcpay/transport/virtual/pn53x.py): host framing and cancelling.

Also home of the helpers ``test_pn533.py`` and ``test_acr122u.py`` share: frame builders
written independently of the emulator's encoder, a recorder of the USB seam, small
peers for the field (a Type A card with a 7-byte UID, a FeliCa card) and an LLCP runner
that drives two ``nfc.ContactlessFrontend`` through ``connect(llcp=...)`` in threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from nfcpay.transport.virtual.pn53x import (
    ACK,
    ERROR_FRAME,
    ChipModel,
    HostFrames,
    decode_frame,
    encode_frame,
)
from tests.support.pn53x import antennas, cmd, rsp

# -- frames at the USB seam -----------------------------------------------------------------


# -- peers in the field -------------------------------------------------------------------


# -- LLCP between two frontends -------------------------------------------------------------


# -- the core's own tests -------------------------------------------------------------------

TEST_MODEL = ChipModel(firmware=bytes.fromhex("33020707"), max_frame=265, register_status=True)


@contextmanager
def bare_chip() -> Iterator[HostFrames]:
    """A PN53x behind its host frames, with no driver: the tests speak raw frames."""
    with antennas("chip") as (antenna,):
        link = HostFrames(antenna, TEST_MODEL, slack=1.0, manufacturer="m", product="p")
        try:
            yield link
        finally:
            link.usb.close()


def test_frames_round_trip_as_upstream_writes_them():
    # base_clf_pn53x.py test_command_with_standard_frame / _extended_frame
    normal = bytes.fromhex("0000ff 05fb d4 00 313233 96 00")
    assert decode_frame(normal) == bytes.fromhex("d400313233")
    extended = bytes.fromhex("0000ffffff 0105fa d400") + b"123" + bytes(256) + b"\x96\x00"
    assert decode_frame(extended) == b"\xd4\x00123" + bytes(256)
    assert encode_frame(bytes.fromhex("d501343536")) == bytes.fromhex("0000ff05fbd5013435368b00")
    assert encode_frame(b"\xd5\x01456" + bytes(256))[:8] == bytes.fromhex("0000ffffff0105fa")
    assert decode_frame(normal[:-2] + b"\x97\x00") is None  # data checksum
    assert decode_frame(bytes.fromhex("0000ff 04fb d4 00 313233 96 00")) is None  # length


def test_a_command_is_acknowledged_then_answered():
    with bare_chip() as link:
        link.usb.write(cmd("02"))
        assert link.usb.read(100) == ACK
        assert link.usb.read(100) == rsp("03 33020707")


def test_a_broken_or_unknown_or_too_long_command_gets_the_error_frame():
    with bare_chip() as link:
        link.usb.write(cmd("02")[:-2] + b"\x00\x00")
        assert link.usb.read(100) == ERROR_FRAME
        link.usb.write(cmd("04"))  # GetGeneralStatus: never sent by nfcpy's drivers
        assert [link.usb.read(100), link.usb.read(100)] == [ACK, ERROR_FRAME]
        link.usb.write(cmd("00 00" + "00" * 264))  # 266 bytes: one more than a PN533 takes
        assert [link.usb.read(100), link.usb.read(100)] == [ACK, ERROR_FRAME]


def test_the_hosts_ack_cancels_a_waiting_command_and_its_answer_never_comes():
    with bare_chip() as link:
        params = (
            "02" + "440001020340" + "01fe010203040506" + "00" * 10 + "01fe0102030405060000" + "0000"
        )
        link.usb.write(cmd("8C " + params))  # TgInitAsTarget: waits for an initiator
        assert link.usb.read(100) == ACK
        with pytest.raises(OSError):
            link.usb.read(50)
        link.usb.write(ACK)
        link.usb.write(cmd("02"))
        assert [link.usb.read(100), link.usb.read(100)] == [ACK, rsp("03 33020707")]
        with pytest.raises(OSError):
            link.usb.read(50)


def test_registers_read_back_what_the_drivers_rely_on():
    with bare_chip() as link:
        link.usb.write(cmd("06 6302 6303 6304 6339 633a"))
        # TxMode/RxMode 106A with CRC, TxControl with the carrier off, an empty FIFO
        assert [link.usb.read(100), link.usb.read(100)] == [ACK, rsp("07 00 80 80 80 00 00")]
        link.usb.write(cmd("32 05 010001"))  # one retry, as the drivers set (reset: for ever)
        assert [link.usb.read(100), link.usb.read(100)] == [ACK, rsp("33")]
        link.usb.write(cmd("4A 0100"))  # nobody in the field
        assert [link.usb.read(100), link.usb.read(100)] == [ACK, rsp("4B 00")]
        link.usb.write(cmd("06 6339 6304"))  # the SENS_REQ stays in the FIFO; carrier on
        assert [link.usb.read(100), link.usb.read(100)] == [ACK, rsp("07 00 26 83")]
