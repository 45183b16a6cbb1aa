"""The emulated ACR122U (nfcpay/transport/virtual/acr122u.py) behind nfcpy's own driver.

1. **Conformance.** nfcpy's upstream driver tests (``tests/test_clf_acr122.py``, with the
   PN532 answers of ``tests/test_clf_pn532.py`` and ``tests/base_clf_pn53x.py``) script the
   CCID frames a real ACR122U exchanges with ``nfc.clf.acr122``; the same driver calls run
   here against the emulator and every frame crossing the USB seam is compared.
2. **The one-byte Lc**: the driver cannot send a PN532 command over 255 bytes; the
   emulator does not hide that.
3. **In a field**: the ACR122U as NFC-DEP initiator (LLCP) to an emulated PN533 target;
   it cannot listen.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import nfc.clf
import nfc.clf.acr122
import pytest
from nfc.clf import LocalTarget, RemoteTarget

from nfcpay.transport.virtual.acr122u import Acr122u, open_acr122u
from nfcpay.transport.virtual.field import SILENT, AirFrame, Reply
from nfcpay.transport.virtual.pn533 import open_pn533
from tests.support.pn53x import LlcpPair, Wire, antennas, frontend


def escape(payload: str) -> bytes:
    """``PC_to_RDR_Escape`` as the driver writes it (slot 0, sequence 0)."""
    data = bytes.fromhex(payload)
    return struct.pack("<BI5x", 0x6F, len(data)) + data


def block(answer: str, status: int = 0) -> bytes:
    """``RDR_to_PC_DataBlock`` as upstream's captured frames show it."""
    data = bytes.fromhex(answer)
    return struct.pack("<BIxxBBx", 0x80, len(data), status, 0x81) + data


def cmd(text: str) -> bytes:
    data = bytes.fromhex("D4" + text)
    return escape(f"ff000000{len(data):02x}" + data.hex())


def rsp(text: str) -> bytes:
    return block("D5" + text + "9000")


def pairs(*frames: tuple[bytes, bytes]) -> list[tuple[str, bytes]]:
    return [item for out, back in frames for item in (("out", out), ("in", back))]


@contextmanager
def acr122u(antenna: Any) -> Iterator[tuple[Any, Wire]]:
    """``open_acr122u`` with a recorder on the USB seam from the first frame on."""
    link = Acr122u(antenna)
    wire = Wire(link.usb)
    device = nfc.clf.acr122.init(link.usb)
    device._path = "virtual"
    try:
        yield device, wire
    finally:
        device.close()


LINE_TEST = "00" + bytes(x & 0xFF for x in range(251)).hex()  # Diagnose test 0, 252 bytes


# -- 1. conformance -------------------------------------------------------------------------


def test_open_and_close_exchange_upstreams_frames():
    # test_clf_acr122.py test_init (and its chipset/device fixtures), test_send_ack,
    # test_close; the PowerDown pair is test_clf_pn532.py's device fixture.
    with antennas("reader") as (antenna,):
        with acr122u(antenna) as (device, wire):
            assert str(device) == "ACS ACR122U PN532v1.4 at virtual"
            init = wire.take()
        close = wire.take()
    assert init == [
        ("out", escape("ff00480000")),
        ("in", block("41435231323255323033", status=0x02)),  # "ACR122U203", no ICC yet
        ("out", bytes.fromhex("62000000000000000000")),
        ("in", block("3b00")),
        *pairs(
            (escape("ff00517f00"), block("7f")),
            (escape("ff00400e0400000000"), block("9002")),  # green LED on
            (cmd("00" + LINE_TEST), rsp("01" + LINE_TEST)),
            (cmd("02"), rsp("03 32010407")),
            (cmd("12 00"), rsp("13")),
            (cmd("32 02000b0a"), rsp("33")),
            (cmd("32 0400"), rsp("33")),
            (cmd("32 05010001"), rsp("33")),
            (cmd("32 0a59f43f114d85616f266287"), rsp("33")),
            (cmd("32 0b69ff3f114185616f"), rsp("33")),
            (cmd("32 0cff0485"), rsp("33")),
            (cmd("32 0d85158a8508b28501da"), rsp("33")),
            (cmd("32 0102"), rsp("33")),
        ),
    ]
    assert close == pairs(
        (escape("0000ff00ff00"), block("9000")),  # cancel the last command
        (cmd("16 b000"), rsp("17 00")),  # PowerDown
        (escape("ff00400c0400000000"), block("9000")),  # LEDs off
    )


def test_sense_with_nobody_in_the_field():
    # test_clf_acr122.py test_sense_tta, test_sense_ttf, test_sense_dep
    atr_req = bytes.fromhex("D400 30313233343536373839 00000000")
    with antennas("reader") as (antenna,), acr122u(antenna) as (device, wire):
        wire.take()
        assert device.sense_tta(RemoteTarget("106A")) is None
        assert wire.take() == pairs((cmd("4A 0100"), rsp("4B 00")), (cmd("06 6339"), rsp("07 26")))
        assert device.sense_ttf(RemoteTarget("212F")) is None
        assert wire.take() == pairs(
            (cmd("06 6304"), rsp("07 83")),  # upstream's mock: 03 (reset value 80h, RF on)
            (cmd("4A 010100ffff0100"), rsp("4B 00")),
        )
        assert device.sense_dep(RemoteTarget("106A", atr_req=atr_req)) is None
        assert wire.take() == pairs(
            (cmd("46 01000230313233343536373839"), rsp("47 01")),
            (cmd("08 63013b"), rsp("09")),  # a PN532 answers WriteRegister with no status
        )


@pytest.mark.parametrize(
    "listen",
    [
        lambda device: device.listen_tta(LocalTarget("106A"), 1.0),
        lambda device: device.listen_ttb(LocalTarget("106B"), 1.0),
        lambda device: device.listen_ttf(LocalTarget("212F"), 1.0),
        lambda device: device.listen_dep(LocalTarget("106A"), 1.0),
    ],
)
def test_it_cannot_listen_and_says_so_before_sending_a_byte(listen):
    # test_clf_acr122.py test_listen_tta/ttb/ttf/dep
    with antennas("reader") as (antenna,), acr122u(antenna) as (device, wire):
        wire.take()
        with pytest.raises(nfc.clf.UnsupportedTargetError):
            listen(device)
        assert wire.take() == []


# -- 2. the one-byte Lc ---------------------------------------------------------------------


class Echo:
    """A DEP peer that answers every frame with ``F0 ok``."""

    def respond(self, frame: AirFrame, exchange_id: int) -> Reply:
        return b"\xf0ok" if frame.brty == "106A" and len(frame.data) > 2 else SILENT

    def field_changed(self, on: bool) -> None:
        pass


DEP_PEER = RemoteTarget("106A", sens_res=b"\x01\x01", sel_res=b"\x40", sdd_res=b"\x08\x01\x02\x03")


def test_a_pn532_command_over_255_bytes_raises_value_error_in_the_driver():
    with antennas("reader", "peer") as (antenna, peer), acr122u(antenna) as (device, wire):
        peer.listen(Echo())
        assert device.get_max_send_data_size(DEP_PEER) == 252
        assert device.send_cmd_recv_rsp(DEP_PEER, b"\xf0" + bytes(251), 1.0) == b"\xf0ok"
        assert wire.take()[-2:] == pairs((cmd("42 f0" + "00" * 251), rsp("43 00 f06f6b")))
        # a DEP frame at nfcpy's default length reduction: 256 bytes with F0, 258 with D4 42
        with pytest.raises(ValueError, match="byte must be in range"):
            device.send_cmd_recv_rsp(DEP_PEER, b"\xf0" + bytes(255), 1.0)
        assert [direction for direction, _ in wire.take()] == ["out", "in"] * 3  # registers,
        # RFConfiguration; the InCommunicateThru itself never left the driver


def test_a_pn532_command_over_254_bytes_is_refused_by_the_reader():
    with antennas("reader", "peer") as (antenna, peer), acr122u(antenna) as (device, wire):
        peer.listen(Echo())
        with pytest.raises(OSError) as refused:  # 63 00: the driver's "error status"
            device.send_cmd_recv_rsp(DEP_PEER, bytes(253), 1.0)
        assert refused.value.errno == errno.EIO
        assert wire.take()[-2:] == pairs((cmd("42" + "00" * 253), block("6300")))


# -- 3. in a field --------------------------------------------------------------------------

MESSAGE = bytes(range(256)) * 2 + bytes(88)  # 600 bytes


def test_llcp_from_an_acr122u_to_a_pn533_carries_600_bytes_in_small_pdus():
    # nfcpy's default LLCP MIU (128): I-PDUs of at most 131 bytes fit the ACR122U's frames.
    pair = LlcpPair(MESSAGE, {}, recv_miu=128)
    with (
        antennas("acr122u", "pn533") as (ia, ta),
        frontend(open_acr122u(ia)) as initiator,
        frontend(open_pn533(ta)) as target,
    ):
        pair.run(target, initiator)
    assert (pair.received, pair.answer) == (MESSAGE, b"ok")


# nfcpy's own initiator crashing the acr122 driver with LR-254 frames, and nfcpay's
# frames sized by the profile: tests/transport/virtual/test_dep_frames.py
