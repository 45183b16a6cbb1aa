"""The PN53x chip core (nfcpay/transport/virtual/pn53x.py): host framing and cancelling.

Also home of the helpers ``test_pn533.py`` and ``test_acr122u.py`` share: frame builders
written independently of the emulator's encoder, a recorder of the USB seam, small
peers for the field (a Type A card with a 7-byte UID, a FeliCa card) and an LLCP runner
that drives two ``nfc.ContactlessFrontend`` through ``connect(llcp=...)`` in threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import nfc
import nfc.clf
import nfc.llcp
import pytest

from nfcpay.transport.virtual.field import SILENT, AirFrame, Field, Reply
from nfcpay.transport.virtual.pn53x import (
    ACK,
    ERROR_FRAME,
    ChipModel,
    HostFrames,
    decode_frame,
    encode_frame,
)
from nfcpay.transport.virtual.usb import VirtualUsb

# -- frames at the USB seam -----------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    """A PN53x host frame built independently of the emulator's encoder."""
    if len(payload) < 256:
        head = bytes([len(payload), -len(payload) & 0xFF])
    else:
        length = len(payload).to_bytes(2, "big")
        head = b"\xff\xff" + length + bytes([-sum(length) & 0xFF])
    return b"\x00\x00\xff" + head + payload + bytes([-sum(payload) & 0xFF, 0])


def cmd(text: str) -> bytes:
    return frame(bytes.fromhex("D4" + text))


def rsp(text: str) -> bytes:
    return frame(bytes.fromhex("D5" + text))


class Wire:
    """Every frame crossing a USB seam, in order: ``[("out"|"in", bytes), ...]``."""

    def __init__(self, usb: VirtualUsb) -> None:
        self.frames: list[tuple[str, bytes]] = []
        usb.observers.append(lambda direction, data: self.frames.append((direction, data)))

    def take(self) -> list[tuple[str, bytes]]:
        frames, self.frames = self.frames, []
        return frames


def exchanges(*pairs: tuple[bytes, bytes | None]) -> list[tuple[str, bytes]]:
    """What the wire shows for PN53x commands: command, ACK, answer (None: cancelled)."""
    expected: list[tuple[str, bytes]] = []
    for command, answer in pairs:
        expected += [("out", command), ("in", ACK)]
        expected += [("in", answer)] if answer is not None else [("out", ACK)]
    return expected


# -- peers in the field -------------------------------------------------------------------


class CardA:
    """A Type A card with a double-size UID, answering activation only."""

    def __init__(self, sens_res: bytes, uid: bytes, sel_res: int) -> None:
        self.sens_res, self.uid, self.sel_res = sens_res, uid, sel_res
        self.heard: list[AirFrame] = []

    def respond(self, air: AirFrame, exchange_id: int) -> Reply:
        self.heard.append(air)
        cl1 = b"\x88" + self.uid[:3]
        cl2 = self.uid[3:7]
        answers = {
            b"\x26": self.sens_res,
            b"\x93\x20": cl1 + bcc(cl1),
            b"\x93\x70" + cl1 + bcc(cl1): b"\x04",
            b"\x95\x20": cl2 + bcc(cl2),
            b"\x95\x70" + cl2 + bcc(cl2): bytes([self.sel_res]),
            b"123": b"456",  # the command and answer upstream's exchange tests use
        }
        return answers.get(air.data, SILENT) if air.brty == "106A" else SILENT

    def field_changed(self, on: bool) -> None:
        pass


class CardF:
    """A FeliCa card answering SENSF_REQ with a fixed SENSF_RES."""

    def __init__(self, sensf_res: bytes) -> None:
        self.sensf_res = sensf_res

    def respond(self, air: AirFrame, exchange_id: int) -> Reply:
        polled = air.brty in ("212F", "424F") and air.data[:2] == b"\x06\x00"
        return bytes([len(self.sensf_res) + 1]) + self.sensf_res if polled else SILENT

    def field_changed(self, on: bool) -> None:
        pass


def bcc(data: bytes) -> bytes:
    return bytes([data[0] ^ data[1] ^ data[2] ^ data[3]])


@contextmanager
def antennas(*names: str, air_time: bool = False) -> Iterator[list[Any]]:
    field = Field(model_air_time=air_time)
    attached = [field.attach(name) for name in names]
    try:
        yield attached
    finally:
        for antenna in attached:
            antenna.close()


@contextmanager
def frontend(device: Any) -> Iterator[nfc.ContactlessFrontend]:
    """A ``ContactlessFrontend`` around an already opened (virtual) device."""
    clf = nfc.ContactlessFrontend()
    clf.device = device
    clf.device._path = "virtual"
    try:
        yield clf
    finally:
        clf.close()


# -- LLCP between two frontends -------------------------------------------------------------

SERVICE = "urn:nfc:sn:nfcpay-test"


class LlcpPair:
    """Target and initiator ``connect(llcp=...)`` in two threads, one message across.

    The initiator's side sends ``message`` over a data-link connection, in pieces of the
    send MIU the peer grants; the target's side answers ``b"ok"``. Exceptions in any
    thread are kept and re-raised by :meth:`run` in the test's thread.
    """

    def __init__(self, message: bytes, llcp_options: dict[str, Any], recv_miu: int) -> None:
        self.message = message
        self.options = llcp_options
        self.recv_miu = recv_miu
        self.received = b""
        self.answer: bytes | None = None
        self.done = threading.Event()
        self.errors: list[BaseException] = []
        self.connected: list[str] = []

    def run(self, target: nfc.ContactlessFrontend, initiator: nfc.ContactlessFrontend) -> None:
        threads = [
            threading.Thread(
                target=self._guard, args=(self._connect, target, "target", self._serve)
            ),
            threading.Thread(
                target=self._guard, args=(self._connect, initiator, "initiator", self._send)
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        if self.errors:
            raise self.errors[0]

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except BaseException as error:
            self.errors.append(error)
            self.done.set()

    def _connect(self, clf: nfc.ContactlessFrontend, role: str, work: Callable) -> None:
        worker: list[threading.Thread] = []

        def on_connect(llc: Any) -> bool:
            self.connected.append(role)
            thread = threading.Thread(target=self._guard, args=(work, llc))
            worker.append(thread)
            thread.start()
            return True

        options = {**self.options, "role": role, "on-connect": on_connect}
        started = time.monotonic()
        clf.connect(
            llcp=options, terminate=lambda: self.done.is_set() or time.monotonic() - started > 10
        )
        for thread in worker:
            thread.join(5)

    def _serve(self, llc: Any) -> None:
        server = nfc.llcp.Socket(llc, nfc.llcp.DATA_LINK_CONNECTION)
        server.setsockopt(nfc.llcp.SO_RCVMIU, self.recv_miu)
        server.bind(SERVICE)
        server.listen(1)
        client = server.accept()
        while len(self.received) < len(self.message):
            piece = client.recv()
            if piece is None:
                break
            self.received += piece
        client.send(b"ok")
        client.close()
        server.close()

    def _send(self, llc: Any) -> None:
        sock = nfc.llcp.Socket(llc, nfc.llcp.DATA_LINK_CONNECTION)
        sock.connect(SERVICE)
        miu = sock.getsockopt(nfc.llcp.SO_SNDMIU)
        for start in range(0, len(self.message), miu):
            sock.send(self.message[start : start + miu])
        self.answer = sock.recv()
        self.done.set()  # ends the link: nfcpy's close() waits for it after the peer's DISC
        sock.close()


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
