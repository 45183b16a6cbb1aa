"""Length-prefixed framing for carrying whole NDEF messages over an LLCP byte stream.

An LLCP connection delivers information fields of at most the peer's MIU, so one NDEF
message may arrive in several pieces. Each message goes out as a 4-byte big-endian length
followed by the message; :class:`Deframer` hands back only complete messages, so a link
that drops half-way leaves nothing behind.

>>> frame(b"hi")
b'\\x00\\x00\\x00\\x02hi'
>>> d = Deframer()
>>> d.feed(b"\\x00\\x00\\x00\\x02h")
[]
>>> d.feed(b"i")
[b'hi']
"""

from __future__ import annotations

import struct

from nfcpay import errors

HEADER = struct.Struct(">I")

#: Largest message the transport accepts. A grant is ~200 bytes and a group payment means
#: a few kilobytes; anything near this limit is garbage or an attack on memory.
MAX_MESSAGE = 64 * 1024


def frame(message: bytes) -> bytes:
    """The wire form of one message."""
    if not isinstance(message, bytes | bytearray):
        raise TypeError(f"a message is bytes, not {type(message).__name__}")
    if not message:
        raise ValueError("an empty message cannot be sent")
    if len(message) > MAX_MESSAGE:
        raise ValueError(f"message of {len(message)} bytes exceeds {MAX_MESSAGE}")
    return HEADER.pack(len(message)) + bytes(message)


def chunks(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into pieces of at most ``size`` bytes."""
    if size < 1:
        raise ValueError("chunk size must be positive")
    return [data[i : i + size] for i in range(0, len(data), size)]


class Deframer:
    """Reassembles framed messages from pieces; rejects impossible lengths."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole message."""
        return len(self._buffer)

    def feed(self, piece: bytes) -> list[bytes]:
        """Add a piece; return the messages it completed (oldest first)."""
        self._buffer += piece
        complete: list[bytes] = []
        while len(self._buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buffer)
            if not 0 < length <= MAX_MESSAGE:
                self._buffer.clear()
                raise errors.ProtocolViolation(
                    f"peer announced a message of {length} bytes (allowed 1..{MAX_MESSAGE})"
                )
            end = HEADER.size + length
            if len(self._buffer) < end:
                break
            complete.append(bytes(self._buffer[HEADER.size : end]))
            del self._buffer[:end]
        return complete
