"""The virtual RF field: where emulated reader chips and virtual tags meet.

A :class:`Field` carries *air frames* (:class:`AirFrame`: a technology/bit rate such as
``"106A"`` and the frame's bytes exactly as nfcpy's drivers hand them to a chip, without
CRC; at 106A an NFC-DEP frame starts with its ``F0`` start byte). Everything that takes
part has an :class:`Antenna` in the field:

* a **polling** chip switches its carrier on (:meth:`Antenna.carrier`) and sends frames with
  :meth:`Antenna.exchange`, which returns the one answer or raises :class:`AirTimeout`
  (nobody answered in time) or :class:`AirCollision` (two carriers at once, or answers that
  cannot be told apart);
* a **listening** chip (NFC-DEP target, emulated card) or a **virtual tag** sets a
  :class:`Responder` on its antenna (:meth:`Antenna.listen`). The field calls
  :meth:`Responder.respond` for every frame sent while the responder is set, and
  :meth:`Responder.field_changed` when the external carrier comes or goes (that is how a
  target learns the poller left, and how a tag resets). ``respond`` answers at once with
  the reply bytes (what a chip's hardware does during activation), with :data:`SILENT`
  (not for me / not in the right state), or with :data:`LATER`: the chip's host will
  answer through :meth:`Antenna.answer` with the exchange's id, before the initiator's
  timeout or not at all (a late answer is dropped, exactly as a real initiator that has
  given up ignores it).

Rules the field enforces, so that chip emulators need not:

* One carrier at a time. A frame sent while another antenna's carrier is on is garbled:
  the sender gets :class:`AirCollision` and no responder hears it. Two polling readers
  in one field therefore never see anything — as with real readers held together.
* A responder never hears its own antenna, and hears nothing while its own carrier is on.
* Several different immediate answers to one frame: the lowest answer wins (a
  deterministic stand-in for ISO/IEC 14443-3 anticollision and FeliCa time slots) and
  the responders that lost are not told; they see the next frame and decide for
  themselves (a tag that was not selected stays silent).
* Silence costs the whole timeout, as on a real chip.
* Air time: each frame and its answer take ``bits / bit rate`` of real time
  (:func:`air_time`), so a 254-byte frame costs ~22 ms at 106 kbps and ~5 ms at 424 kbps.

The field is in-process and thread-safe. :mod:`nfcpay.transport.virtual.broker` puts one
behind a socket so that antennas in separate processes share it.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

#: Bit rate in kbit/s per technology string.
BIT_RATES = {"106A": 106, "106B": 106, "212F": 212, "424F": 424, "212A": 212, "424A": 424}

#: Multiply every response-wait a chip enforces by this much (real chips meet their
#: deadlines in hardware; the emulators share two CPU cores with everything else). A
#: host that answers later than ``SLACK`` times the deadline still fails.
DEFAULT_SLACK = 4.0


class AirError(Exception):
    """Something went wrong on the air (base class)."""


class AirTimeout(AirError):
    """No answer within the timeout."""


class AirCollision(AirError):
    """The frame or its answers were garbled (two carriers, or colliding answers)."""


@dataclass(frozen=True)
class AirFrame:
    """One frame on the air: its technology and bit rate, and its bytes (no CRC)."""

    brty: str
    data: bytes

    def __post_init__(self) -> None:
        if self.brty not in BIT_RATES:
            raise ValueError(f"unknown technology/bit rate {self.brty!r}")


class _Later:
    def __repr__(self) -> str:
        return "LATER"


class _Silent:
    def __repr__(self) -> str:
        return "SILENT"


#: A responder's reply meaning "my host answers through Antenna.answer".
LATER = _Later()
#: A responder's reply meaning "I do not answer this frame".
SILENT = _Silent()
Reply = bytes | _Later | _Silent


class Responder(Protocol):
    """What answers in the field: a chip in target/card mode, or a virtual tag."""

    def respond(self, frame: AirFrame, exchange_id: int) -> Reply:
        """Answer ``frame`` now (bytes), later (:data:`LATER`) or never (:data:`SILENT`).

        Called on the field's thread of the sender; must not block.
        """
        ...

    def field_changed(self, on: bool) -> None:
        """The external carrier came on (``True``) or went off (``False``)."""
        ...


class FieldAntenna(Protocol):
    """What a chip emulator needs of its antenna: an :class:`Antenna`, or the broker's
    ``RemoteAntenna`` for a field shared between processes."""

    name: str

    def carrier(self, on: bool) -> None: ...

    def exchange(self, frame: AirFrame, timeout: float) -> bytes: ...

    def listen(self, responder: Responder | None) -> None: ...

    def answer(self, exchange_id: int, data: bytes) -> bool: ...

    @property
    def external_field(self) -> bool: ...


def air_time(frame: AirFrame) -> float:
    """Seconds a frame takes on the air: start-of-frame, bytes with parity (Type A) or
    preamble and sync (Type F), and the CRC the chip adds."""
    kbps = BIT_RATES[frame.brty]
    octets = len(frame.data) + 2  # CRC
    if frame.brty.endswith("A"):
        bits = 9 * octets + 2
    elif frame.brty.endswith("B"):
        bits = 10 * octets + 22
    else:
        bits = 8 * octets + 48 + 16  # preamble and sync code
    return bits / (kbps * 1000.0)


@dataclass
class _Pending:
    """An exchange waiting for deferred answers."""

    exchange_id: int
    sender: Antenna
    answers: list[bytes]
    done: threading.Event
    #: Antennas whose responder said LATER: only they may answer this exchange.
    deferring: set[int] = dataclasses.field(default_factory=set)


class Field:
    """An in-process RF field shared by antennas (see the module docstring)."""

    def __init__(self, name: str = "field", *, model_air_time: bool = True) -> None:
        self.name = name
        self.model_air_time = model_air_time
        self._lock = threading.RLock()
        self._antennas: dict[int, Antenna] = {}
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        #: Observers of every frame and answer (tracing, tests): fn(kind, antenna, frame).
        self.observers: list[Callable[[str, str, AirFrame], None]] = []

    # -- antennas ---------------------------------------------------------------------

    def attach(self, name: str) -> Antenna:
        """A new antenna in this field, named for logs and traces."""
        antenna = Antenna(self, name, next(self._ids))
        with self._lock:
            self._antennas[antenna.id] = antenna
        return antenna

    def _detach(self, antenna: Antenna) -> None:
        antenna.listen(None)
        antenna.carrier(False)
        with self._lock:
            self._antennas.pop(antenna.id, None)

    @property
    def antennas(self) -> list[Antenna]:
        with self._lock:
            return list(self._antennas.values())

    def carriers(self) -> list[Antenna]:
        """Antennas whose carrier is on."""
        with self._lock:
            return [a for a in self._antennas.values() if a.carrier_on]

    # -- carrier ------------------------------------------------------------------------

    def _carrier_changed(self, antenna: Antenna, on: bool) -> None:
        with self._lock:
            others_on = any(a.carrier_on for a in self._antennas.values() if a is not antenna)
            listeners = [
                a for a in self._antennas.values() if a is not antenna and a.responder is not None
            ]
        if others_on:
            return  # the external field seen by listeners does not change
        for listener in listeners:
            responder = listener.responder
            if responder is not None:
                responder.field_changed(on)

    def external_field(self, antenna: Antenna) -> bool:
        """Whether some other antenna's carrier is on (what a listening chip senses)."""
        with self._lock:
            return any(a.carrier_on for a in self._antennas.values() if a is not antenna)

    # -- frames ---------------------------------------------------------------------------

    def _exchange(self, sender: Antenna, frame: AirFrame, timeout: float) -> bytes:
        self._observe("send", sender, frame)
        self._spend(frame)
        with self._lock:
            if not sender.carrier_on:
                raise AirError(f"{sender.name} sent {frame.brty} with its carrier off")
            if any(a.carrier_on for a in self._antennas.values() if a is not sender):
                raise AirCollision("another reader's carrier is on: the frame was garbled")
            listeners = [
                a
                for a in self._antennas.values()
                if a is not sender and a.responder is not None and not a.carrier_on
            ]
            pending = _Pending(next(self._ids), sender, [], threading.Event())
            self._pending[pending.exchange_id] = pending
        deadline = time.monotonic() + timeout
        try:
            immediate = self._ask(listeners, frame, pending)
            if immediate:
                answer = min(immediate)
            elif pending.deferring:
                answer = self._await(pending, deadline)
            else:
                time.sleep(max(0.0, deadline - time.monotonic()))  # a chip waits it out
                raise AirTimeout("no answer")
        finally:
            with self._lock:
                self._pending.pop(pending.exchange_id, None)
        reply = AirFrame(frame.brty, answer)
        self._spend(reply)
        self._observe("recv", sender, reply)
        return answer

    def _ask(self, listeners: list[Antenna], frame: AirFrame, pending: _Pending) -> list[bytes]:
        """The immediate answers; the antennas that will answer later join ``pending``."""
        immediate: list[bytes] = []
        for listener in listeners:
            responder = listener.responder
            if responder is None:
                continue
            with self._lock:  # before respond(): its host may answer at once, on another thread
                pending.deferring.add(listener.id)
            reply = responder.respond(frame, pending.exchange_id)
            if reply is not LATER:
                with self._lock:
                    pending.deferring.discard(listener.id)
            if isinstance(reply, bytes | bytearray):
                immediate.append(bytes(reply))
        return immediate

    def _await(self, pending: _Pending, deadline: float) -> bytes:
        while True:
            left = deadline - time.monotonic()
            if pending.done.wait(max(0.0, min(left, 0.05))):
                with self._lock:
                    return pending.answers[0]
            if left <= 0:
                raise AirTimeout("no answer within the response-wait time")

    def _answer(self, antenna: Antenna, exchange_id: int, data: bytes) -> bool:
        with self._lock:
            pending = self._pending.get(exchange_id)
            if pending is None or pending.done.is_set():
                return False  # the initiator gave up: a late answer is lost
            if antenna.id not in pending.deferring:
                return False  # only a responder that said LATER may answer
            pending.answers.append(bytes(data))
            pending.done.set()
        return True

    def _spend(self, frame: AirFrame) -> None:
        if self.model_air_time:
            time.sleep(air_time(frame))

    def _observe(self, kind: str, antenna: Antenna, frame: AirFrame) -> None:
        for observer in list(self.observers):
            observer(kind, antenna.name, frame)


class Antenna:
    """One participant's coupling to a :class:`Field`."""

    def __init__(self, field: Field, name: str, antenna_id: int) -> None:
        self.field = field
        self.name = name
        self.id = antenna_id
        self.carrier_on = False
        self.responder: Responder | None = None

    def carrier(self, on: bool) -> None:
        """Switch this antenna's own carrier (the polling side's RF field)."""
        with self.field._lock:
            if on == self.carrier_on:
                return
            self.carrier_on = on
        self.field._carrier_changed(self, on)

    def exchange(self, frame: AirFrame, timeout: float) -> bytes:
        """Send ``frame`` and return the answer (see the module docstring for errors)."""
        return self.field._exchange(self, frame, timeout)

    def listen(self, responder: Responder | None) -> None:
        """Answer frames with ``responder`` from now on (None: stop listening)."""
        self.responder = responder

    def answer(self, exchange_id: int, data: bytes) -> bool:
        """Answer a frame the responder deferred; False when the sender gave up."""
        return self.field._answer(self, exchange_id, data)

    @property
    def external_field(self) -> bool:
        """Whether another antenna's carrier is on."""
        return self.field.external_field(self)

    def close(self) -> None:
        self.field._detach(self)

    def __repr__(self) -> str:
        return f"<Antenna {self.name} in {self.field.name}>"
