"""The first run at a real counter: do these readers work, and how fast?

``nfcpay selftest`` opens one or two readers on this laptop and runs what a counter needs,
step by step, timing each and naming the fix for any problem:

* **two readers** (held together): a tap between them — one waits, the other taps, as
  ``merchant charge`` and ``target pay`` do — then a 600-byte message each way (means with
  eight grants), and, when both can listen, the same with the roles swapped;
* **one reader**: a tag held to it (an NTAG215/216 or a FeliCa Lite-S) is written with a
  test message, read back and wiped, as ``--carrier tag`` does.

It needs no server and no terminal: only the transport, over the same drivers and code
paths as the payment commands.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nfcpay import errors
from nfcpay.transport.reader import Reader

#: The message each side sends: as long as a payment's means with eight grants.
MESSAGE = bytes(range(256)) * 2 + bytes(88)
SERVICE = "selftest"


@dataclass
class Step:
    """One step: what it checked, whether it worked, how long it took, what to do if not."""

    name: str
    ok: bool
    ms: float
    detail: str = ""
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "ms": round(self.ms, 1), "detail": self.detail,
                "fix": self.fix}  # fmt: skip


@dataclass
class Report:
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    @contextmanager
    def step(self, name: str) -> Iterator[Step]:
        """Time the block as step ``name``; an nfcpay error fails the step, not the run."""
        step = Step(name, False, 0.0)
        started = time.perf_counter()
        try:
            yield step
            step.ok = True
        except errors.NfcPayError as exc:
            step.detail, step.fix = exc.message, _fix_for(exc)
        finally:
            step.ms = 1000 * (time.perf_counter() - started)
            self.steps.append(step)


def _fix_for(exc: errors.NfcPayError) -> str:
    if isinstance(exc, errors.UnsupportedByReader):
        return "swap the readers' roles (--swap), or see README's pairing table"
    if isinstance(exc, errors.ExchangeTimeout):
        return (
            "hold the two readers' antennas flat against each other (1-2 cm), away from "
            "metal, and run again; two ACR122Us cannot link (use a tag: --carrier tag)"
        )
    if isinstance(exc, errors.LinkLost):
        return "keep the readers still during the tap; if it repeats, try --carrier tt3"
    return "run `nfcpay doctor`"


def two_readers(waiting: Reader, tapping: Reader, *, timeout: float) -> Report:
    """A tap between two readers, a 600-byte message each way; again swapped if possible."""
    report = Report()
    pairs = [(waiting, tapping)]
    if tapping.profile.can_listen and waiting.profile.can_poll:
        pairs.append((tapping, waiting))
    for listener, poller in pairs:
        label = f"{listener.profile.name} waits, {poller.profile.name} taps"
        with report.step(f"tap and 600 bytes each way ({label})") as step:
            step.detail = _tap_and_echo(listener, poller, timeout)
    return report


def _tap_and_echo(listener: Reader, poller: Reader, timeout: float) -> str:
    failure: list[errors.NfcPayError] = []
    echoed = threading.Event()

    def wait() -> None:
        try:
            with listener.tap(SERVICE, offer=True, timeout=timeout) as channel:
                channel.send(channel.receive(timeout=5))
                echoed.set()
        except errors.NfcPayError as exc:  # reported by the tapping side
            failure.append(exc)

    waiting = threading.Thread(target=wait, name="selftest-waiting", daemon=True)
    waiting.start()
    started = time.perf_counter()
    try:
        with poller.tap(SERVICE, offer=False, timeout=timeout) as channel:
            linked = time.perf_counter()
            channel.send(MESSAGE)
            if channel.receive(timeout=5) != MESSAGE:
                raise errors.ProtocolViolation("the message came back changed")
            done = time.perf_counter()
    finally:
        waiting.join(timeout + 10)  # its own tap timeout ends it
    if failure:
        raise failure[0]
    return (
        f"link-up {1000 * (linked - started):.0f} ms, 1,200 bytes {1000 * (done - linked):.0f} ms"
    )


def one_reader(reader: Reader, *, timeout: float, on_wait: Callable[[str], None]) -> Report:
    """Write a test message to the tag held to ``reader``, read it back, wipe it."""
    from nfcpay.transport.tag import take_tag, write_tag

    report = Report()
    message = b"\xd1\x01\x0dT\x02ennfcpay test"  # an NDEF Text record
    on_wait("Hold an NFC tag (NTAG215/216, FeliCa Lite-S) to the reader")
    with report.step("write a message to the tag"):
        write_tag(reader, message, timeout=timeout)
    if not report.ok:
        return report  # nothing to read back
    with report.step("read it back and wipe the tag") as step:
        read = take_tag(reader, lambda octets: octets, timeout=timeout)
        if read != message:
            raise errors.ProtocolViolation(f"read back {len(read)} different bytes")
        step.detail = f"{len(message)} bytes"
    return report
