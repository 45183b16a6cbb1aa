"""``--trace FILE``: every frame between nfcpy's driver and the reader chip, timestamped.

A trace is what a person sends when a real counter misbehaves, and what
:mod:`nfcpay.transport.virtual.replay` replays against the emulated chip, so that it
becomes a regression test. It records at nfcpy's transport seam (the object the driver
calls ``write(frame)``/``read(timeout)`` on: USB bulk frames of the PN533 and RC-S380, CCID
frames of the ACR122U), from just after the reader is opened. The loopback reader has no
chip, so it has nothing to trace.

The file is JSON Lines::

    {"trace": "nfcpay", "version": 1, "nfcpay": "0.1.0", "device": "virtual:acr122u@f",
     "driver": "acr122", "profile": "acr122u", "redacted": true, "tags": [...], ...}
    {"t": 0.0123, "dir": "out", "frame": "6f0900..."}     # out: host → chip
    {"t": 0.0141, "dir": "in", "frame": "800c00..."}      # in: chip → host

**Redaction.** Usage-auth values and signatures (the record fields marked secret) are
replaced by ``5A`` bytes wherever four or more of their bytes appear in a row: whole, or cut
into pieces by NFC-DEP chaining or a tag's 4-byte pages. The frame's checksum is recomputed
and the masked byte ranges are listed with the frame (``"masked": [[start, end], …]``),
after which a replay compares only the frame's length. Pieces shorter than four bytes stay
(at most three bytes at either end of a 32- or 64-byte secret, where a tag's pages cut it).
The terminal tells the recorder each NDEF message it sends or receives
(:meth:`TraceRecorder.observe_message`); the file is written when the reader closes, once
every secret is known. ``keep_secrets`` (``--trace-secrets``) keeps them, for a trace that
never leaves the machine.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nfcpay import __version__
from nfcpay.errors import ConfigError

FORMAT = "nfcpay"
VERSION = 1
#: What a redacted secret's bytes become.
MASK = 0x5A
#: A run of this many bytes of a secret is masked wherever it appears.
MIN_PIECE = 4


@dataclass(frozen=True)
class Frame:
    """One frame on the driver seam: seconds since the trace began, ``out`` (host → chip)
    or ``in``, the bytes, and the byte ranges a redaction masked."""

    at: float
    direction: str
    data: bytes
    masked: tuple[tuple[int, int], ...] = ()


class TracingTransport:
    """Stands between nfcpy's driver and its transport, recording every frame."""

    def __init__(self, inner: Any, record: Callable[[str, bytes], None]) -> None:
        self._inner = inner
        self._record = record

    def write(self, frame: bytes | bytearray, timeout: int = 0) -> None:
        self._record("out", bytes(frame))
        self._inner.write(frame, timeout)

    def read(self, timeout: int = 0) -> bytearray:
        frame = self._inner.read(timeout)
        if frame:
            self._record("in", bytes(frame))
        return frame  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TraceRecorder:
    """Records one reader's frames and writes them to ``path`` when closed."""

    def __init__(
        self,
        path: Path,
        *,
        keep_secrets: bool = False,
        secrets_of: Callable[[bytes], list[bytes]] = lambda _: [],
    ) -> None:
        self.path = path
        self.keep_secrets = keep_secrets
        self._secrets_of = secrets_of
        self._secrets: set[bytes] = set()
        self._frames: list[tuple[float, str, bytes]] = []
        self._header: dict[str, Any] = {}
        self._started = time.monotonic()
        self._lock = threading.Lock()

    def attach(self, clf: Any, *, device: str, profile: str, tags: list[dict[str, str]]) -> None:
        """Record the frames of ``clf``'s chip from now on."""
        chipset = getattr(clf.device, "chipset", None)
        if chipset is None or getattr(chipset, "transport", None) is None:
            raise ConfigError(
                f"--trace records the frames between nfcpy's driver and a reader chip; "
                f"{device} has none (use a real reader or a virtual one: virtual:CHIP@FIELD)"
            )
        driver = type(clf.device).__module__.rsplit(".", 1)[-1]
        self._header = {
            "trace": FORMAT,
            "version": VERSION,
            "nfcpay": __version__,
            "device": device,
            "driver": driver,
            "profile": profile,
            "chipset": str(getattr(clf.device, "chipset_name", "")),
            "redacted": not self.keep_secrets,
            "started": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "tags": tags,
        }
        chipset.transport = TracingTransport(chipset.transport, self._record)

    def observe_message(self, octets: bytes) -> None:
        """An NDEF message the terminal sent or received: remember its secrets."""
        if not self.keep_secrets:
            self._secrets.update(s for s in self._secrets_of(octets) if len(s) >= MIN_PIECE)

    def _record(self, direction: str, frame: bytes) -> None:
        with self._lock:
            self._frames.append((time.monotonic() - self._started, direction, frame))

    def close(self) -> None:
        """Write the trace (redacted unless ``keep_secrets``)."""
        if not self._header:
            return
        refit = CHECKSUMS.get(self._header["driver"], _no_checksum)
        pieces = _pieces(self._secrets)
        lines = [json.dumps(self._header)]
        for at, direction, frame in self._frames:
            line: dict[str, Any] = {"t": round(at, 6), "dir": direction}
            masked = redact(frame, pieces)
            if masked:
                frame = refit(_masked(frame, masked))
                line["masked"] = masked
            lines.append(json.dumps({**line, "frame": frame.hex()}))
        self.path.write_text("\n".join(lines) + "\n")


def _pieces(secrets: set[bytes]) -> set[bytes]:
    """Every run of :data:`MIN_PIECE` bytes of every secret."""
    return {s[i : i + MIN_PIECE] for s in secrets for i in range(len(s) - MIN_PIECE + 1)}


def redact(frame: bytes, pieces: set[bytes]) -> list[tuple[int, int]]:
    """The byte ranges of ``frame`` that hold a piece of a secret (merged, in order)."""
    spans: list[tuple[int, int]] = []
    for start in range(len(frame) - MIN_PIECE + 1):
        if frame[start : start + MIN_PIECE] in pieces:
            end = start + MIN_PIECE
            if spans and spans[-1][1] >= start:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))
    return spans


def _masked(frame: bytes, spans: list[tuple[int, int]]) -> bytes:
    data = bytearray(frame)
    for start, end in spans:
        data[start:end] = bytes([MASK]) * (end - start)
    return bytes(data)


def _no_checksum(frame: bytes) -> bytes:
    return frame


def _pn533_frame(frame: bytes) -> bytes:
    """Recompute the data checksum of a PN533 normal/extended information frame."""
    if frame[:3] != b"\x00\x00\xff" or len(frame) < 8:
        return frame
    start = 8 if frame[3:5] == b"\xff\xff" else 5
    return frame[:-2] + bytes([-sum(frame[start:-2]) & 0xFF]) + frame[-1:]


#: Drivers whose host frames carry a data checksum (the ACR122U's CCID frames carry none).
CHECKSUMS: dict[str, Callable[[bytes], bytes]] = {"pn533": _pn533_frame, "rcs380": _pn533_frame}


def load(path: Path) -> tuple[dict[str, Any], list[Frame]]:
    """A trace file's header and frames (ConfigError for a file that is not one)."""
    try:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not an nfcpay trace: {exc}") from None
    if not lines or lines[0].get("trace") != FORMAT:
        raise ConfigError(f"{path} is not an nfcpay trace (no header line)")
    header = lines[0]
    if header.get("version") != VERSION:
        raise ConfigError(
            f"{path} is a version {header.get('version')} trace; this nfcpay reads version "
            f"{VERSION} (upgrade nfcpay)"
        )
    frames = [
        Frame(
            float(x["t"]),
            str(x["dir"]),
            bytes.fromhex(x["frame"]),
            tuple((int(a), int(b)) for a, b in x.get("masked", ())),
        )
        for x in lines[1:]
    ]
    return header, frames


def matches(expected: Frame, got: bytes) -> bool:
    """Whether ``got`` is the traced answer ``expected``. A frame with masked bytes is
    compared up to its first masked byte, and by length: what follows may hold checksums
    over the secret (a tag's CRC, the host frame's DCS) that no replay can reproduce."""
    if not expected.masked:
        return got == expected.data
    first = expected.masked[0][0]
    return len(got) == len(expected.data) and got[:first] == expected.data[:first]
