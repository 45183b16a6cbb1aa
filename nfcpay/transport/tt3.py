"""Carrier 2: the Type 3 tag mailbox (see :mod:`~nfcpay.transport.mailbox` for the protocol).

The listening side emulates the tag with nfcpy's ``Type3TagEmulation`` in a background
thread; the polling side reads and writes it with nfcpy's ``Type3Tag`` block commands.
Both work one tap at a time: the poller ends the tap by switching its field off.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import nfc
import nfc.clf
import nfc.tag
import nfc.tag.tt3

from nfcpay import errors
from nfcpay.transport import timing
from nfcpay.transport.channel import Channel
from nfcpay.transport.mailbox import (
    BLOCK,
    WRITE_BUSY,
    Mailbox,
    attribute_block,
    parse_attribute_block,
)
from nfcpay.transport.nfcpy import map_nfc_errors
from nfcpay.transport.roles import Role

NDEF_SYSTEM = bytes.fromhex("12FC")
NDEF_READ_SERVICE = 0x000B
NDEF_WRITE_SERVICE = 0x0009
#: PMm: IC code FF (no FeliCa product, so nfcpy treats it as a plain Type 3 tag); timing
#: bytes BF let a reader wait 77 ms for a one-block command (an emulating host is slow).
PMM = bytes.fromhex("03FF000000BFBF00")
SENSF_REQ = bytes.fromhex("0012FC0100")
MAX_BLOCKS_PER_COMMAND = 12


def blocks_per_command(max_frame: int) -> tuple[int, int]:
    """(nbr, nbw) that keep read responses and write commands within ``max_frame`` bytes."""
    nbr = min(MAX_BLOCKS_PER_COMMAND, (max_frame - 13) // BLOCK)
    nbw = min(MAX_BLOCKS_PER_COMMAND, (max_frame - 14) // (BLOCK + 2))
    if nbr < 1 or nbw < 1:
        raise ValueError(f"frames of {max_frame} bytes are too small for Type 3 tag emulation")
    return nbr, nbw


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


@contextmanager
def tt3_tap(
    clf: nfc.ContactlessFrontend, *, role: Role, deadline: float | None, max_frame: int
) -> Iterator[Channel]:
    """One tap over the Type 3 tag mailbox, as the emulated tag (listen) or its reader (poll)."""
    if role == "listen":
        nbr, nbw = blocks_per_command(max_frame)
        mailbox = Mailbox(nbr, nbw)
        emulation = Emulation(mailbox, emulate(clf, deadline))
        try:
            yield TagSideChannel(mailbox, emulation)
        finally:
            emulation.close()
    else:
        tag = discover_tt3(clf, deadline)
        try:
            yield ReaderSideChannel(tag)
        finally:
            clf.device.mute()  # field off: the tag side sees the tap end


def local_target() -> nfc.clf.LocalTarget:
    target = nfc.clf.LocalTarget("212F")
    idm = bytes.fromhex("02FE") + os.urandom(6)
    target.sensf_res = b"\x01" + idm + PMM + NDEF_SYSTEM
    return target


def emulate(clf: nfc.ContactlessFrontend, deadline: float | None) -> nfc.tag.TagEmulation:
    """Listen as a Type 3 tag until a reader talks to it."""
    with map_nfc_errors("listening as a Type 3 tag"):
        while True:
            left = remaining(deadline)
            if left is not None and left <= 0:
                raise errors.ExchangeTimeout("no reader came within the tap timeout")
            window = timing.LISTEN_SLICE if left is None else min(timing.LISTEN_SLICE, left)
            try:
                target = clf.listen(local_target(), window)
            except nfc.clf.CommunicationError:
                continue  # a reader that left half-way through activation; keep listening
            if target is not None and target.tt3_cmd:
                tag = nfc.tag.emulate(clf, target)
                if tag is not None:
                    return tag


class BlockStore(Protocol):
    """What an emulated tag serves: nfcpy block callbacks plus a condition to wake waiters."""

    changed: threading.Condition

    def read_block(self, number: int, rb: bool, re: bool) -> bytes | None: ...

    def write_block(self, number: int, data: bytes, wb: bool, we: bool) -> bool: ...


class Emulation:
    """nfcpy's command/response loop for an emulated tag, on a background thread."""

    def __init__(self, store: BlockStore, tag: nfc.tag.TagEmulation) -> None:
        self.store = store
        self.error: errors.TransportError | None = None
        tag.add_service(NDEF_READ_SERVICE, store.read_block, store.write_block)
        tag.add_service(NDEF_WRITE_SERVICE, store.read_block, store.write_block)
        self._tag = tag
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nfcpay-tt3", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return not self._ended.is_set()

    def _run(self) -> None:
        try:
            with map_nfc_errors("serving the Type 3 tag"):
                self._serve()
        except errors.TransportError as exc:
            self.error = exc
        finally:
            self._ended.set()
            with self.store.changed:
                self.store.changed.notify_all()

    def _serve(self) -> None:
        response = self._tag.process_command(self._tag.cmd)
        idle_since = time.monotonic()
        while not self._stop.is_set():
            try:
                command = self._tag.send_response(response, timing.WAIT_SLICE)
            except nfc.clf.TimeoutError:
                response = None
                if time.monotonic() - idle_since > timing.TT3_COMMAND_TIMEOUT:
                    raise errors.LinkLost("the reader stopped talking to the tag") from None
                continue
            except nfc.clf.BrokenLinkError:
                return
            idle_since = time.monotonic()
            response = self._tag.process_command(command) if command else None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the reader to leave; True when it did."""
        return self._ended.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


class TagSideChannel(Channel):
    """The emulated tag's side: publish our message, collect what the reader writes."""

    carrier = "tt3"
    role = "listen"

    def __init__(self, mailbox: Mailbox, emulation: Emulation) -> None:
        self._mailbox = mailbox
        self._emulation = emulation

    def send(self, message: bytes, timeout: float = timing.SEND_TIMEOUT) -> None:
        if not message:
            raise ValueError("an empty message cannot be sent")
        self._mailbox.publish(message)
        self._wait(lambda: self._mailbox.delivered, timeout, "read the message")

    def receive(self, timeout: float) -> bytes:
        message: list[bytes] = []

        def arrived() -> bool:
            taken = self._mailbox.take()
            if taken is not None:
                message.append(taken)
            return bool(message)

        self._wait(arrived, timeout, "write a message")
        return message[0]

    def _wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._mailbox.changed:
            while not check():
                if not self._emulation.alive:
                    raise self._emulation.error or errors.LinkLost("the reader left the field")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise errors.ExchangeTimeout(f"the reader did not {what} within {timeout:g}s")
                self._mailbox.changed.wait(min(left, timing.WAIT_SLICE))


def discover_tt3(clf: nfc.ContactlessFrontend, deadline: float | None) -> nfc.tag.tt3.Type3Tag:
    """Poll for an NDEF Type 3 tag (system code 12FC) until one answers."""
    with map_nfc_errors("polling for a Type 3 tag"):
        while True:
            target = clf.sense(nfc.clf.RemoteTarget("212F", sensf_req=SENSF_REQ))
            tag = nfc.tag.activate(clf, target) if target is not None else None
            if isinstance(tag, nfc.tag.tt3.Type3Tag) and _answers(tag):
                return tag
            left = remaining(deadline)
            if left is not None and left <= 0:
                raise errors.ExchangeTimeout("no Type 3 tag came within the tap timeout")
            time.sleep(timing.POLL_PAUSE)


def _answers(tag: nfc.tag.tt3.Type3Tag) -> bool:
    """The tag reads back; a tag that left (or a listener that re-armed) does not."""
    try:
        tag.read_from_ndef_service(0)
    except nfc.tag.TagCommandError:
        return False
    return True


class ReaderSideChannel(Channel):
    """The reader's side: read the tag's message, write ours with the T3T write procedure."""

    carrier = "tt3"
    role = "poll"

    def __init__(self, tag: nfc.tag.tt3.Type3Tag) -> None:
        self._tag = tag

    def _attributes(self) -> tuple[int, int, int, int, int]:
        return parse_attribute_block(bytes(self._tag.read_from_ndef_service(0)))

    def receive(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        with map_nfc_errors("reading the Type 3 tag"):
            while True:
                nbr, _nbw, nmaxb, writef, length = self._attributes()
                if writef != WRITE_BUSY and length:
                    break
                if time.monotonic() > deadline:
                    raise errors.ExchangeTimeout(
                        f"the tag offered no new message within {timeout:g}s"
                    )
                time.sleep(timing.TT3_READ_PAUSE)
            if length > nmaxb * BLOCK:
                raise errors.ProtocolViolation(
                    f"tag announces {length} bytes but holds {nmaxb * BLOCK}"
                )
            last = -(-length // BLOCK)
            data = bytearray()
            for first in range(1, last + 1, nbr):
                data += self._tag.read_from_ndef_service(*range(first, min(first + nbr, last + 1)))
        return bytes(data[:length])

    def send(self, message: bytes, timeout: float = timing.SEND_TIMEOUT) -> None:
        if not message:
            raise ValueError("an empty message cannot be sent")
        with map_nfc_errors("writing the Type 3 tag"):
            nbr, nbw, nmaxb, _writef, length = self._attributes()
            if len(message) > nmaxb * BLOCK:
                raise ValueError(
                    f"message of {len(message)} bytes exceeds the tag's {nmaxb * BLOCK}"
                )
            self._tag.write_to_ndef_service(attribute_block(nbr, nbw, nmaxb, WRITE_BUSY, length), 0)
            padded = message + bytes(-len(message) % BLOCK)
            count = len(padded) // BLOCK
            for first in range(1, count + 1, nbw):
                blocks = range(first, min(first + nbw, count + 1))
                chunk = padded[(first - 1) * BLOCK : blocks[-1] * BLOCK]
                self._tag.write_to_ndef_service(chunk, *blocks)
            self._tag.write_to_ndef_service(attribute_block(nbr, nbw, nmaxb, 0, len(message)), 0)

    def send_partial(self, message: bytes) -> None:
        """Start a write and stop half-way (fault injection for tests and tools)."""
        with map_nfc_errors("writing the Type 3 tag"):
            nbr, nbw, nmaxb, _writef, length = self._attributes()
            self._tag.write_to_ndef_service(attribute_block(nbr, nbw, nmaxb, WRITE_BUSY, length), 0)
            self._tag.write_to_ndef_service(message[:BLOCK].ljust(BLOCK, b"\0"), 1)
