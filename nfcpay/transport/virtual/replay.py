"""Replay a ``--trace`` against the emulated chip, so that a counter's trace becomes a test.

:func:`replay` opens the trace's chip (by its firmware profile) through nfcpy's own driver,
in an in-process field holding the trace's virtual tags with the memory they had when the
trace began. Opening runs the driver's usual open sequence, as the traced run did before
its trace began. Then it writes each recorded host frame to the chip and compares what
the chip answers with the recorded answers, in order. An empty list of mismatches means
the emulator answers exactly as the traced chip did.

What a single trace can replay: a reader alone, or with tags (``selftest`` with one
reader, ``user give``/``target receive``/``group join`` with ``--carrier tag``). A tap
between two readers also depends on the other reader, which is not in the trace: the
first answer that carries the peer's frames is reported as a mismatch (got nothing).
A trace of a real reader whose tags were not virtual names no tags; give the replay
``tags`` to stand in for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nfcpay.errors import ConfigError
from nfcpay.transport.device import EMULATED_CHIPS
from nfcpay.transport.trace import Frame, load, matches
from nfcpay.transport.virtual.field import DEFAULT_SLACK, Field
from nfcpay.transport.virtual.readers import chip_opener
from nfcpay.transport.virtual.tags import make_tag

#: How long the replay waits for each recorded answer (real chips answer within the
#: driver's own timeouts; this is only the bound for an emulator that stays silent).
ANSWER_WAIT = 5.0


@dataclass(frozen=True)
class Mismatch:
    """The chip's answer to host frame ``sent`` (the trace's frame ``index``) differs."""

    index: int
    sent: bytes
    expected: bytes
    got: bytes | None

    def __str__(self) -> str:
        got = self.got.hex() if self.got is not None else "nothing"
        return (
            f"frame {self.index}: after {self.sent.hex()} the chip answered {got}, "
            f"the trace has {self.expected.hex()}"
        )


def replay(
    path: Path, *, tags: list[dict[str, str]] | None = None, slack: float = DEFAULT_SLACK
) -> list[Mismatch]:
    """Replay the trace at ``path``; the answers that differ (none: a faithful emulator)."""
    header, frames = load(path)
    chip = str(header.get("profile"))
    if chip not in EMULATED_CHIPS:
        raise ConfigError(
            f"{path} was recorded on a {chip} reader; the emulated chips are "
            f"{', '.join(EMULATED_CHIPS)}"
        )
    field = Field(f"replay-{chip}")
    tag_antennas = [_place(field, tag, n) for n, tag in enumerate(tags or header["tags"])]
    antenna = field.attach(chip)
    device = chip_opener(chip)(antenna, slack=slack)
    try:
        return _compare(device.chipset.transport, frames)
    finally:
        device.close()
        for tag_antenna in (antenna, *tag_antennas):
            tag_antenna.close()


def _place(field: Field, tag: dict[str, str], number: int) -> Any:
    responder = make_tag(tag["kind"])
    if tag.get("memory"):
        responder.memory = bytes.fromhex(tag["memory"])
    antenna = field.attach(f"tag-{number}")
    antenna.listen(responder)
    return antenna


def _compare(transport: Any, frames: list[Frame]) -> list[Mismatch]:
    mismatches = []
    sent, sent_index = b"", -1
    for index, frame in enumerate(frames):
        if frame.direction == "out":
            transport.write(frame.data)
            sent, sent_index = frame.data, index
            continue
        try:
            got: bytes | None = bytes(transport.read(int(ANSWER_WAIT * 1000)))
        except OSError:  # the transport's timeout
            got = None
        if got is None or not matches(frame, got):
            mismatches.append(Mismatch(sent_index, sent, frame.data, got))
    return mismatches
