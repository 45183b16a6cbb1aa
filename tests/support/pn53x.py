"""Frames, cards and LLCP peers for the virtual PN53x chips' tests (PN533, ACR122U, Type 3)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import nfc
import nfc.clf
import nfc.llcp

from nfcpay.transport.virtual.field import SILENT, AirFrame, Field, Reply
from nfcpay.transport.virtual.pn53x import (
    ACK,
)
from nfcpay.transport.virtual.usb import VirtualUsb


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


def frame(payload: bytes) -> bytes:
    """A PN53x host frame built independently of the emulator's encoder."""
    if len(payload) < 256:
        head = bytes([len(payload), -len(payload) & 0xFF])
    else:
        length = len(payload).to_bytes(2, "big")
        head = b"\xff\xff" + length + bytes([-sum(length) & 0xFF])
    return b"\x00\x00\xff" + head + payload + bytes([-sum(payload) & 0xFF, 0])


def bcc(data: bytes) -> bytes:
    return bytes([data[0] ^ data[1] ^ data[2] ^ data[3]])


SERVICE = "urn:nfc:sn:nfcpay-test"
