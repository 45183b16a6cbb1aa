"""The Type 3 tag mailbox: memory and turn-taking of the emulated tag (no nfcpy here).

The listening side emulates an NFC Forum Type 3 tag (system code 12FC, NDEF service
0x000B read / 0x0009 write). Block 0 is the standard attribute block; blocks 1.. hold one
message. Turn-taking uses the attribute block's WriteF flag the way the NFC Forum T3T
mapping does for an unfinished write:

* ``WriteF = 0x00, Ln = n``  — a message of n bytes from the tag side is ready to read;
* ``WriteF = 0x0F``          — busy: the tag side has nothing new for the reader yet.

The reader writes its message with the standard procedure (attribute WriteF=0x0F, data
blocks, attribute WriteF=0x00 with the new Ln). When that last attribute write lands the
message goes to the tag side's inbox and the tag turns busy until the tag side answers.
Once the reader has read the last block of a ready message, the tag turns busy too, so a
reader never mistakes an old message for a new one.
"""

from __future__ import annotations

import struct
import threading
from collections import deque

from nfcpay import errors

VERSION = 0x10
WRITE_BUSY = 0x0F
BLOCK = 16


def attribute_block(nbr: int, nbw: int, nmaxb: int, writef: int, length: int) -> bytes:
    """An NFC Forum T3T attribute information block with its checksum."""
    head = struct.pack(">BBBH4xBB", VERSION, nbr, nbw, nmaxb, writef, 0x01)
    head += length.to_bytes(3, "big")
    return head + struct.pack(">H", sum(head))


def parse_attribute_block(block: bytes) -> tuple[int, int, int, int, int]:
    """(nbr, nbw, nmaxb, writef, ln) of an attribute block; bad data is a ProtocolViolation."""
    if len(block) != BLOCK or sum(block[:14]) != struct.unpack(">H", block[14:16])[0]:
        raise errors.ProtocolViolation("Type 3 tag attribute block is corrupt (checksum)")
    version, nbr, nbw, nmaxb, writef, _rw = struct.unpack(">BBBH4xBB", block[:11])
    if version >> 4 != VERSION >> 4:
        raise errors.ProtocolViolation(f"unsupported Type 3 NDEF mapping version {version:#04x}")
    return nbr, nbw, nmaxb, writef, int.from_bytes(block[11:14], "big")


class Mailbox:
    """The emulated tag's memory; block callbacks run on nfcpy's emulation thread."""

    def __init__(self, nbr: int, nbw: int, nmaxb: int = 255) -> None:
        self.nbr, self.nbw, self.nmaxb = nbr, nbw, nmaxb
        self._data = bytearray(BLOCK * nmaxb)
        self._length = 0
        self._busy = True
        self._writing = False
        self._outgoing_blocks = 0
        self._inbox: deque[bytes] = deque()
        self.changed = threading.Condition()

    @property
    def capacity(self) -> int:
        return BLOCK * self.nmaxb

    # -- the tag side (our application thread) --------------------------------------------

    def publish(self, message: bytes) -> None:
        """Offer a message to the reader (it becomes readable at once)."""
        if len(message) > self.capacity:
            raise ValueError(f"message of {len(message)} bytes exceeds the tag's {self.capacity}")
        with self.changed:
            self._data[: len(message)] = message
            self._length = len(message)
            self._outgoing_blocks = max(1, -(-len(message) // BLOCK))
            self._busy = False

    @property
    def delivered(self) -> bool:
        """The last published message has been read to its last block."""
        return self._busy and self._outgoing_blocks == 0

    def take(self) -> bytes | None:
        """The oldest complete message the reader wrote, if any."""
        with self.changed:
            return self._inbox.popleft() if self._inbox else None

    @property
    def write_in_progress(self) -> bool:
        return self._writing

    # -- nfcpy callbacks (emulation thread) -------------------------------------------------

    def read_block(self, number: int, rb: bool, re: bool) -> bytes | None:
        with self.changed:
            if number == 0:
                writef = WRITE_BUSY if self._busy else 0
                length = 0 if self._busy else self._length
                return attribute_block(self.nbr, self.nbw, self.nmaxb, writef, length)
            if not 1 <= number <= self.nmaxb:
                return None
            if not self._busy and number == self._outgoing_blocks:
                self._busy, self._outgoing_blocks = True, 0
                self.changed.notify_all()
            return bytes(self._data[(number - 1) * BLOCK : number * BLOCK])

    def write_block(self, number: int, data: bytes, wb: bool, we: bool) -> bool:
        with self.changed:
            if number == 0:
                return self._write_attribute(bytes(data))
            if not (self._writing and 1 <= number <= self.nmaxb):
                return False
            self._data[(number - 1) * BLOCK : number * BLOCK] = data
            return True

    def _write_attribute(self, block: bytes) -> bool:
        try:
            _nbr, _nbw, _nmaxb, writef, length = parse_attribute_block(block)
        except errors.ProtocolViolation:
            return False
        if writef == WRITE_BUSY:
            self._writing, self._busy, self._outgoing_blocks = True, True, 0
            return True
        if not self._writing or not 0 < length <= self.capacity:
            return False
        self._inbox.append(bytes(self._data[:length]))
        self._writing, self._busy = False, True
        self.changed.notify_all()
        return True
