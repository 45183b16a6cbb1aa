"""Carrier 3: a tag (``--carrier tag``) — one side writes an NDEF message to an NFC Forum tag, the
other reads it later. It needs only poll-capable readers (two ACR122Us can use it), at the
price of two taps and no answer within a tap, so the payload must protect itself (signed,
bound to its recipient, anti-replay) — that is the records layer's job.

On the loopback reader there is no physical tag, so :func:`serve_tag` lets a third process
*be* one: it emulates a plain NFC Forum Type 3 tag (standard attribute block and write
procedure, memory kept across taps) that :func:`write_tag` and :func:`read_tag` use through
nfcpy's ordinary tag code, exactly as they would use an NTAG or a FeliCa Lite-S.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import nfc.clf
import nfc.tag

from nfcpay import errors
from nfcpay.transport import timing
from nfcpay.transport.mailbox import BLOCK, attribute_block
from nfcpay.transport.nfcpy import map_nfc_errors
from nfcpay.transport.reader import Reader
from nfcpay.transport.tt3 import Emulation, blocks_per_command, emulate

T = TypeVar("T")


def write_tag(reader: Reader, message: bytes, *, timeout: float | None = None) -> None:
    """Write ``message`` (a whole NDEF message) to the next NFC Forum tag presented."""
    if not message:
        raise ValueError("an empty message cannot be written")
    tag = _wait_for_tag(reader, timeout)
    try:
        reader.observe_message(message)
        with map_nfc_errors(f"writing {tag}"):
            _write(tag, message)
    finally:
        reader.clf.device.mute()


def read_tag(reader: Reader, *, timeout: float | None = None) -> bytes:
    """The NDEF message on the next NFC Forum tag presented."""
    tag = _wait_for_tag(reader, timeout)
    try:
        with map_nfc_errors(f"reading {tag}"):
            octets = _message_on(tag)
            if not octets:
                raise errors.ProtocolViolation(f"{tag} holds no NDEF message")
            reader.observe_message(octets)
            return octets
    finally:
        reader.clf.device.mute()


#: What a taken tag holds afterwards: one empty NDEF record (TNF 0), the NFC Forum's empty
#: message (an empty *message* cannot be written to a Type 2 tag by nfcpy 1.0.4).
EMPTY_MESSAGE = b"\xd0\x00\x00"


def is_blank(octets: bytes) -> bool:
    """Whether a tag's message is nothing: never written, or wiped by a take."""
    return octets in (b"", EMPTY_MESSAGE)


def take_tag(reader: Reader, accept: Callable[[bytes], T], *, timeout: float | None = None) -> T:
    """Read the next tag's NDEF message, hand it to ``accept``, then wipe the tag.

    The tag is wiped only when ``accept`` returns (a message for someone else raises and
    stays on the tag for them), and in the same activation, so a hand-off through a
    sticker leaves nothing behind for the next reader.
    """

    def take(octets: bytes) -> tuple[T, bytes]:
        if is_blank(octets):
            raise errors.ProtocolViolation(
                "the tag holds no message (nothing written yet, or taken and wiped)"
            )
        return accept(octets), EMPTY_MESSAGE

    return swap_tag(reader, take, timeout=timeout)


#: What a :func:`swap_tag` callback returns: its result, and the message to leave on the
#: tag (None leaves the tag as it was).
Swap = Callable[[bytes], tuple[T, bytes | None]]


def swap_tag(reader: Reader, swap: Swap[T], *, timeout: float | None = None) -> T:
    """Read the next tag's message (``b""`` when it holds none) and, in the same
    activation, replace it with what ``swap`` decides.

    A read-check-write in one activation: a bill's request and a member's share take turns
    on one sticker, and each side checks what it finds before it overwrites it. When
    ``swap`` raises, the tag keeps what it held.
    """
    tag = _wait_for_tag(reader, timeout)
    try:
        with map_nfc_errors(f"reading {tag}"):
            found = _message_on(tag)
        reader.observe_message(found)
        result, leave = swap(found)
        if leave is not None:
            reader.observe_message(leave)
            with map_nfc_errors(f"writing {tag}"):
                _write(tag, leave)
        return result
    finally:
        reader.clf.device.mute()


def _write(tag: nfc.tag.Tag, message: bytes) -> None:
    """Write ``message`` to ``tag`` and make sure it kept it."""
    ndef = tag.ndef
    if ndef is None:
        raise errors.ProtocolViolation(f"{tag} has no NDEF area (format it first)")
    if not ndef.is_writeable:
        raise errors.UnsupportedByReader(f"{tag} is read-only")
    if len(message) > ndef.capacity:
        raise errors.UnsupportedByReader(
            f"{tag} holds {ndef.capacity} bytes, the message needs {len(message)}"
        )
    ndef.octets = message
    if ndef.has_changed:
        raise errors.LinkLost(f"{tag} did not keep the message (read-back differs)")


def _message_on(tag: nfc.tag.Tag) -> bytes:
    """The NDEF message ``tag`` holds (empty when it has no NDEF area or no message)."""
    ndef = tag.ndef
    return bytes(ndef.octets) if ndef is not None and ndef.length else b""


def _wait_for_tag(reader: Reader, timeout: float | None) -> nfc.tag.Tag:
    targets = [nfc.clf.RemoteTarget(brty) for brty in reader.profile.poll]
    if not targets:
        raise errors.UnsupportedByReader(f"{reader.profile.name} cannot poll for tags")
    deadline = None if timeout is None else time.monotonic() + timeout
    with map_nfc_errors("polling for a tag"):
        while deadline is None or time.monotonic() < deadline:
            target = reader.clf.sense(*targets)
            if target is not None and not _is_peer_device(target):
                tag = nfc.tag.activate(reader.clf, target)
                if tag is not None:
                    return tag
            time.sleep(timing.POLL_PAUSE)
    raise errors.ExchangeTimeout("no tag was presented within the timeout")


def _is_peer_device(target: nfc.clf.RemoteTarget) -> bool:
    """NFC-DEP capable targets (phones, readers in P2P) are not tags."""
    if target.sel_res and target.sel_res[0] & 0x40:
        return True
    return bool(target.sensf_res and target.sensf_res[1:3] == b"\x01\xfe")


class TagMemory:
    """A plain NFC Forum Type 3 tag's memory: attribute block 0 plus data blocks."""

    def __init__(self, message: bytes, max_frame: int, nmaxb: int = 255) -> None:
        nbr, nbw = blocks_per_command(max_frame)
        if len(message) > BLOCK * nmaxb:
            raise ValueError(f"message of {len(message)} bytes exceeds {BLOCK * nmaxb}")
        self.changed = threading.Condition()
        self._blocks = bytearray(BLOCK * (nmaxb + 1))
        self._blocks[:BLOCK] = attribute_block(nbr, nbw, nmaxb, 0, len(message))
        self._blocks[BLOCK : BLOCK + len(message)] = message
        self._nmaxb = nmaxb

    @property
    def message(self) -> bytes:
        length = int.from_bytes(self._blocks[11:14], "big")
        return bytes(self._blocks[BLOCK : BLOCK + length])

    def read_block(self, number: int, rb: bool, re: bool) -> bytes | None:
        if not 0 <= number <= self._nmaxb:
            return None
        return bytes(self._blocks[number * BLOCK : (number + 1) * BLOCK])

    def write_block(self, number: int, data: bytes, wb: bool, we: bool) -> bool:
        if not 0 <= number <= self._nmaxb:
            return False
        with self.changed:
            self._blocks[number * BLOCK : (number + 1) * BLOCK] = data
            self.changed.notify_all()
        return True


def serve_tag(
    reader: Reader, message: bytes = b"", *, taps: int = 1, timeout: float | None = None
) -> bytes:
    """Be an NFC Forum Type 3 tag for ``taps`` reader visits; return the final message.

    Needs a reader that can emulate a Type 3 tag (the loopback reader, an RC-S380).
    """
    if not reader.profile.can_emulate_tt3:
        raise errors.UnsupportedByReader(f"{reader.profile.name} cannot emulate a Type 3 tag")
    memory = TagMemory(message, reader.profile.emulation_max_frame)
    for _ in range(taps):
        deadline = None if timeout is None else time.monotonic() + timeout
        emulation = Emulation(memory, emulate(reader.clf, deadline))
        emulation.wait()
        emulation.close()
    return memory.message
