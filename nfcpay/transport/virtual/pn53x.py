"""The NXP PN53x chip core shared by the emulated PN533 (SCL3711) and ACR122U (PN532).

nfcpay's counters run nfcpy's real drivers (``nfc/clf/pn53x.py`` with ``pn533.py``,
``pn532.py`` and ``acr122.py``), so this module emulates the *chip*: :class:`Pn53x` takes the
chip commands ``D4 cmd …`` a host link hands it (:class:`HostFrames` for the PN533's own
``00 00 FF LEN LCS … DCS 00`` frames, the CCID escape in :mod:`.acr122u`) and answers
``D5 cmd+1 …``, meeting other chips and virtual tags in a virtual RF field
(:mod:`nfcpay.transport.virtual.field`).

What the chip does, as nfcpy's drivers and upstream's driver tests expect it:

* **Commands run on the chip's own thread.** The host writes a command, reads the ACK and
  then waits *its* timeout for the answer; when it gives up it writes an ACK, which cancels
  the command (TgInitAsTarget and TgGetInitiatorCommand wait for the initiator with no
  deadline of their own, exactly as on the chip, so the host's ACK is what ends them).
  An answer the host no longer waits for is dropped, never read as the next command's.
* **Initiator**: ``InListPassiveTarget`` at 106A (SENS_REQ, SDD_REQ/SEL_REQ per cascade
  level, or SEL_REQ with the UID the host gives) and 212F/424F (SENSF_REQ), retried
  ``MxRtyPassiveActivation`` times; with no answer the SENS_REQ stays in the CIU FIFO
  (``FIFOData`` reads ``26h``), which is how the driver tells "nobody" from "a Type 1
  Tag". ``InCommunicateThru`` sends the host's bytes at the bit rate and framing of the
  ``CIU_TxMode`` register, waits the ``RFConfiguration`` item-2 timeout and, with
  ``RxCRCEn`` off in ``CIU_RxMode`` (the driver's Type 2 Tag path), hands the host the
  answer's CRC_A to check. ``InJumpForDEP``/``InJumpForPSL`` in active mode send the
  ATR_REQ the chip builds and wait the item-2 ATR_RES timeout, ``MxRtyATR`` times.
* **Target**: ``TgInitAsTarget`` answers SENS_REQ/SDD_REQ/SEL_REQ (from the MIFARE
  parameters) and SENSF_REQ (from the FeliCa parameters) by itself and hands the host the
  first frame after activation — an ATR_REQ in DEP mode, any frame in passive-only mode —
  with the mode byte (bit rate, DEP, passive/active framing). An ATR_REQ that comes with
  no passive activation before it is an active-mode activation. ``TgResponseToInitiator``
  answers the last frame (through :meth:`Antenna.answer`, so an answer later than the
  initiator's deadline is lost); ``TgGetInitiatorCommand`` waits for the next frame at the
  bit rate of ``CIU_RxMode`` (which the driver reprograms for PSL). With ``DetectSync``
  (``CIU_Mode`` bit 6) set, the chip strips and adds the 106A ``F0`` start byte itself.
  The initiator's carrier going off releases the target: status 29h, which the driver
  turns into ``BrokenLinkError``.
* **Type F target through the CIU** (nfcpy's ``listen_ttf``, Type 3 Tag emulation, which
  cannot use TgInitAsTarget): the host loads 25 bytes into the FIFO for the
  ``Configure`` command (NFC-A, then NFC-F parameters: IDm, PMm, system code) and starts
  ``AutoColl``. Until the host writes the Idle command, the chip then listens at the bit
  rate of ``CIU_RxMode`` only and answers SENSF_REQ by itself, through the same target
  state as TgInitAsTarget (system code FFh bytes match any, request code 01h adds the
  system code, any other adds nothing). The first other frame after a SENSF_REQ ends
  AutoColl: it goes into the FIFO (``FIFOLevel`` counts it) with ``RxIRq`` and ``IdleIRq``
  in ``CIU_CommIRq``, and the CIU is in Transceive. The CIU does not compare the IDm: the
  driver does, and restarts AutoColl (which wants a new SENSF_REQ) for a frame that is
  not for it. In Transceive, ``StartSend`` (``CIU_BitFraming`` bit 7) sends what the FIFO
  holds as the answer to the frame last received (through :meth:`Antenna.answer`, with
  the initiator's deadline); the next frame at that bit rate comes in with ``RxIRq``. A
  received frame holds the receiver until the host answers it or flushes the FIFO. The
  IRQ registers keep their bits until the host clears them (bit 7 of a write: set
  instead); the chip latches what the receiver saw when the host next reads or writes
  registers, so the initiator's carrier going off (``RfOffIRq`` in ``CIU_DivIRq``, the
  driver's ``BrokenLinkError``) is lost if it falls before the host's next clear, as on
  the chip. nfcpy's own loops give the timeouts: ``listen_ttf`` returns None after Idle,
  a target waiting for a command raises ``TimeoutError``.
* **Limits**: host frames of ``max_frame`` bytes (PN533 265, ACR122U 254) both ways —
  a longer command gets the error frame, a longer answer status 0Eh; every deadline the
  chip keeps is multiplied by ``slack`` (``field.DEFAULT_SLACK``). The CIU FIFO holds 64
  bytes: whatever the host or the receiver puts in beyond that is lost and sets
  ``BufferOvfl`` in ``CIU_Error`` (and ``ErrIRq``; ``FlushBuffer`` clears it), so a Type
  F frame longer than 64 bytes (length byte included) never passes whole. A command that long
  reaches the host as its first 64 bytes, whose length byte says more (nfcpy raises
  ``TransmissionError``: "frame length byte error"); an answer that long goes out as its
  first 64 bytes (the reader's Type 3 Tag code: "invalid response length"). Hence the
  SCL3711 profile's ``[tag_emulation] max_frame = 64``. (nfcpy's driver writes 3 bytes
  per FIFO byte into one WriteRegister, so it fails itself, before the chip, for an
  answer over 83 bytes.)

Not emulated, and why: passive-mode ``InJumpForDEP``/``InJumpForPSL`` (nfcpy's drivers
only jump in active mode; the chip answers 27h), PSL inside the jump (nfcpy jumps at the
bit rate it wants); Type B and Type 1 (Jewel) polling (``InListPassiveTarget`` answers "no
target"; nfcpay uses neither) and with it ``InDataExchange``; automatic RATS
(SetParameters bit 4, nfcpy clears it); of the CIU, whatever ``listen_ttf`` does not
need: AutoColl at 106A or in active mode, the Transmit/Receive commands and the timer of
nfcpy's Type 1 Tag path, the effect of any other register (it holds what the host
writes), the interrupt bits nfcpy never reads (``TxIRq``, the FIFO alerts: upstream's
driver tests read them as 0) and ``CIU_Error`` bits other than ``BufferOvfl`` (a field
of whole frames sets none of them); commands nfcpy's drivers never send
(GetGeneralStatus, TgGetData/TgSetData, InATR, InPSL, InRelease, …) get the error frame.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import nfc.clf.device

from nfcpay.transport.virtual.field import (
    DEFAULT_SLACK,
    LATER,
    SILENT,
    AirError,
    AirFrame,
    FieldAntenna,
    Reply,
)
from nfcpay.transport.virtual.usb import VirtualUsb

log = logging.getLogger(__name__)

#: The chip acknowledges every command frame with this; from the host, it cancels.
ACK = bytes.fromhex("0000ff00ff00")
#: What the chip answers a frame it cannot take (bad checksum, unknown command, too long).
ERROR_FRAME = bytes.fromhex("0000ff01ff7f8100")
SOF = b"\x00\x00\xff"

# Status bytes (PN533 user manual, "Error handling").
OK, TIMEOUT, CRC_ERROR, BUFFER_OVERFLOW = 0x00, 0x01, 0x02, 0x0E
FORMAT_ERROR, NOT_IN_CONTEXT, RELEASED = 0x13, 0x27, 0x29

# CIU registers the drivers read back or program.
MODE, TX_MODE, RX_MODE, TX_CONTROL = 0x6301, 0x6302, 0x6303, 0x6304
COMMAND, COMM_IRQ, DIV_IRQ, ERROR = 0x6331, 0x6334, 0x6335, 0x6336
FIFO_DATA, FIFO_LEVEL, BIT_FRAMING = 0x6339, 0x633A, 0x633D
DETECT_SYNC, CRC_EN = 0x40, 0x80
FIFO_SIZE = 64
# CIU_Command commands; the Configure command takes 25 bytes from the FIFO: NFC-A
# parameters (6), NFC-F parameters (IDm, PMm, system code: 18) and one more byte.
CIU_IDLE, CIU_CONFIGURE, CIU_TRANSCEIVE, CIU_AUTOCOLL = 0x00, 0x01, 0x0C, 0x0D
CONFIGURATION_SIZE = 25
# CIU_CommIRq / CIU_DivIRq bits (bit 7 of a write: set the marked bits, else clear them),
# CIU_Error's BufferOvfl, CIU_FIFOLevel's FlushBuffer and CIU_BitFraming's StartSend.
IRQ_SET, RX_IRQ, IDLE_IRQ, ERR_IRQ, RF_OFF_IRQ = 0x80, 0x20, 0x10, 0x02, 0x01
BUFFER_OVFL, FLUSH_BUFFER, START_SEND = 0x10, 0x80, 0x80
EEPROM_BASE = 0xA000
#: Register values after power-up that the drivers read before writing them.
REGISTER_DEFAULTS = {MODE: 0x3B, TX_MODE: 0x80, RX_MODE: 0x80, TX_CONTROL: 0x80, 0x6305: 0x40}

#: ``CIU_TxMode``/``CIU_RxMode`` framing bits → technology letter (01b is active mode).
FRAMINGS = {0b00: "A", 0b10: "F", 0b11: "B"}
RATES = (106, 212, 424, 848)

# How long the chip listens for an answer to an activation frame before it retries: the
# firmware's CIU timer, about a millisecond for SENS/SDD/SEL and one FeliCa time slot
# (1.2 ms after a 2.4 ms response time) for SENSF.
SENS_WAIT = 0.001
SENSF_WAIT = 0.0036
#: RFConfiguration defaults after reset: item 2 (RFU, ATR_RES timeout, retry timeout) and
#: item 5 (MxRtyATR, MxRtyPSL, MxRtyPassiveActivation; FFh = for ever).
TIMINGS_DEFAULT = bytes.fromhex("000b0a")
RETRIES_DEFAULT = bytes.fromhex("ff01ff")
FOREVER = 0xFF
#: How often a chip waiting for the air checks whether the host cancelled (seconds).
ABORT_POLL = 0.005

SENS_REQ, ALL_REQ = b"\x26", b"\x52"
CASCADE_LEVELS = (0x93, 0x95, 0x97)
CASCADE_TAG = 0x88


@dataclass(frozen=True)
class ChipModel:
    """What tells one PN53x product from another, as far as nfcpy can see."""

    firmware: bytes  # GetFirmwareVersion: IC, Ver, Rev, Support
    max_frame: int  # longest D4/D5 payload of a host frame
    register_status: bool  # PN533 prefixes Read/WriteRegister answers with a status byte
    eeprom: bytes = b""  # PN533 only: 256 bytes at A000h
    power_down: bool = False  # PN532 only: the PowerDown command


def encode_frame(payload: bytes) -> bytes:
    """A host frame around ``payload``: normal up to 255 bytes, extended beyond."""
    checksums = bytes([-sum(payload) & 0xFF, 0])
    if len(payload) < 256:
        return SOF + bytes([len(payload), -len(payload) & 0xFF]) + payload + checksums
    length = len(payload).to_bytes(2, "big")
    return SOF + b"\xff\xff" + length + bytes([-sum(length) & 0xFF]) + payload + checksums


def decode_frame(frame: bytes) -> bytes | None:
    """The payload of a well-formed normal or extended frame, or None."""
    if frame[:5] == SOF + b"\xff\xff" and len(frame) >= 10:
        head, length, start = frame[5:8], int.from_bytes(frame[5:7], "big"), 8
    elif frame[:3] == SOF and len(frame) >= 7:
        head, length, start = frame[3:5], frame[3], 5
    else:
        return None
    payload = frame[start:-2]
    if sum(head) & 0xFF or len(payload) != length or frame[-1] != 0:
        return None
    return payload if (sum(payload) + frame[-2]) & 0xFF == 0 else None


def ciu_timeout(index: int, slack: float) -> float:
    """Seconds for an RFConfiguration timeout index: 100 µs * 2^(n-1) (0: the longest)."""
    return 100e-6 * (1 << ((index or 16) - 1)) * slack


def crc_a(data: bytes) -> bytes:
    return bytes(nfc.clf.device.Device.add_crc_a(bytearray(data))[-2:])


class _Malformed(Exception):
    """A command the chip cannot parse: it answers with the error frame."""


class _Cancelled(Exception):
    """The host cancelled the running command (ACK): it ends without an answer."""


#: What a command's host link does with the chip's answer (None: the error frame).
AnswerSink = Callable[[bytes | None], None]


@dataclass
class _Job:
    generation: int
    payload: bytes
    sink: AnswerSink


class Pn53x:
    """The chip: commands from a host link, RF through the antenna."""

    def __init__(
        self, antenna: FieldAntenna, model: ChipModel, *, slack: float = DEFAULT_SLACK
    ) -> None:
        self.antenna = antenna
        self.model = model
        self.slack = slack
        self._lock = threading.Lock()
        self._generation = 0
        self._abort = threading.Event()
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._registers = dict(REGISTER_DEFAULTS)
        self._fifo = bytearray()
        self._timings = bytearray(TIMINGS_DEFAULT)
        self._retries = bytearray(RETRIES_DEFAULT)
        self._target = _Target(self._rx_brty)
        self._listening = False
        # The CIU as a Type F target (AutoColl/Transceive, see the module docstring).
        self._configuration = bytes(CONFIGURATION_SIZE)
        self._ciu_target = False
        self._receiving = False
        self._carrier_losses = 0
        self._commands: dict[int, Callable[[bytes], bytes]] = {
            0x00: self._diagnose,
            0x02: self._get_firmware_version,
            0x06: self._read_register,
            0x08: self._write_register,
            0x12: self._set_parameters,
            0x32: self._rf_configuration,
            0x42: self._in_communicate_thru,
            0x46: self._in_jump,
            0x4A: self._in_list_passive_target,
            0x56: self._in_jump,
            0x88: self._tg_get_initiator_command,
            0x8C: self._tg_init_as_target,
            0x90: self._tg_response_to_initiator,
        }
        if model.power_down:
            self._commands[0x16] = self._power_down
        # A daemon: a driver whose close was cut short (Ctrl-C mid-command) must not keep
        # the process alive waiting for a chip nobody talks to any more.
        self._thread = threading.Thread(
            target=self._serve, name=f"pn53x-{antenna.name}", daemon=True
        )
        self._thread.start()

    # -- host side ----------------------------------------------------------------------

    def submit(self, payload: bytes, sink: AnswerSink) -> None:
        """Run ``D4 cmd …`` on the chip's thread; ``sink`` gets ``D5 cmd+1 …`` unless the
        command is cancelled first."""
        with self._lock:
            self._jobs.put(_Job(self._generation, payload, sink))

    def cancel(self) -> None:
        """Abort the running command and drop every answer not yet given (when this
        returns, no earlier command answers any more)."""
        with self._lock:
            self._generation += 1
            self._abort.set()
        self._target.wake()

    def close(self) -> None:
        """Stop the chip's thread and leave the field (idempotent)."""
        if not self._thread.is_alive():
            return
        self.cancel()
        self._jobs.put(None)
        self._thread.join()
        self._leave_target_mode()
        self.antenna.carrier(False)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            with self._lock:
                if job.generation != self._generation:
                    continue
                self._abort.clear()
            try:
                answer = self._run(job.payload)
            except _Cancelled:
                continue
            with self._lock:
                if job.generation == self._generation:
                    job.sink(answer)

    def _run(self, payload: bytes) -> bytes | None:
        if len(payload) < 2 or payload[0] != 0xD4 or len(payload) > self.model.max_frame:
            return None
        command = self._commands.get(payload[1])
        try:
            if command is None:
                raise _Malformed(f"command {payload[1]:02X}h")
            answer = bytes([0xD5, payload[1] + 1]) + command(payload[2:])
        except _Malformed as error:
            log.debug("%s: error frame for %s", self.antenna.name, error)
            return None
        if len(answer) > self.model.max_frame:  # only RF data can grow this long
            return answer[:2] + bytes([BUFFER_OVERFLOW])
        return answer

    def _check_abort(self) -> None:
        if self._abort.is_set():
            raise _Cancelled

    # -- miscellaneous commands ---------------------------------------------------------

    def _diagnose(self, params: bytes) -> bytes:
        if params[:1] == b"\x00":  # communication line test: echo
            return params
        if params in (b"\x01", b"\x02"):  # ROM and RAM checks pass
            return b"\x00"
        raise _Malformed("diagnose test")

    def _get_firmware_version(self, params: bytes) -> bytes:
        return self.model.firmware

    def _set_parameters(self, params: bytes) -> bytes:
        if len(params) != 1:
            raise _Malformed("SetParameters flags")
        return b""

    def _power_down(self, params: bytes) -> bytes:
        self._leave_target_mode()
        self._set_carrier(False)
        return bytes([OK])

    def _read_register(self, params: bytes) -> bytes:
        if not params or len(params) % 2:
            raise _Malformed("register list")
        self._ciu_sync()
        addresses = [int.from_bytes(params[i : i + 2], "big") for i in range(0, len(params), 2)]
        values = bytes(self._register(address) for address in addresses)
        return bytes([OK]) + values if self.model.register_status else values

    def _register(self, address: int) -> int:
        if address == FIFO_DATA:
            return self._fifo.pop(0) if self._fifo else 0
        if address == FIFO_LEVEL:
            return len(self._fifo)
        if EEPROM_BASE <= address < EEPROM_BASE + len(self.model.eeprom):
            return self.model.eeprom[address - EEPROM_BASE]
        return self._registers.get(address, 0)

    def _write_register(self, params: bytes) -> bytes:
        if not params or len(params) % 3:
            raise _Malformed("register/value list")
        self._ciu_sync()
        for i in range(0, len(params), 3):
            self._write(int.from_bytes(params[i : i + 2], "big"), params[i + 2])
        return bytes([OK]) if self.model.register_status else b""

    def _write(self, address: int, value: int) -> None:
        if address == FIFO_DATA:
            self._fifo_put(bytes([value]))
        elif address == FIFO_LEVEL:  # read-only but for FlushBuffer
            if value & FLUSH_BUFFER:
                self._flush_fifo()
        elif address == TX_CONTROL:
            self._set_carrier(bool(value & 0b11))
        elif address in (COMM_IRQ, DIV_IRQ):
            bits, current = value & ~IRQ_SET, self._registers.get(address, 0)
            self._registers[address] = current | bits if value & IRQ_SET else current & ~bits
        elif address == COMMAND:
            self._ciu_command(value)
        elif address == BIT_FRAMING:
            self._registers[address] = value & ~START_SEND
            if value & START_SEND:
                self._start_send()
        else:
            self._registers[address] = value

    def _rf_configuration(self, params: bytes) -> bytes:
        if not params:
            raise _Malformed("RFConfiguration item")
        item, data = params[0], params[1:]
        if item == 0x01:  # RF field: bit 0 on/off (bit 1, auto RFCA, changes nothing here)
            self._leave_target_mode()
            self._set_carrier(bool(data[:1] and data[0] & 1))
        elif item == 0x02 and len(data) == 3:
            self._timings[:] = data
        elif item == 0x05 and len(data) == 3:
            self._retries[:] = data
        return b""  # items 04h (MxRtyCOM) and 0Ah-0Dh (analog settings) change nothing here

    def _set_carrier(self, on: bool) -> None:
        self._registers[TX_CONTROL] = 0x80 | (0b11 if on else 0)
        self.antenna.carrier(on)

    # -- initiator ----------------------------------------------------------------------

    def _initiator(self) -> None:
        """Every initiator command leaves target mode and switches the carrier on."""
        self._leave_target_mode()
        self._set_carrier(True)

    def _send(self, frame: AirFrame, wait: float) -> bytes | None:
        """The answer to ``frame``, or None for silence and garbled answers.

        The exchange runs on a thread of its own so that the host's ACK ends the wait at
        once, as on the chip (the field spends the whole timeout on silence). An exchange
        left behind ends by itself within ``wait``; its answer is dropped."""
        self._check_abort()
        outcome: list[bytes | None] = []
        done = threading.Event()
        threading.Thread(
            target=self._exchange, args=(frame, wait, outcome, done), daemon=True
        ).start()
        while not done.wait(ABORT_POLL):
            self._check_abort()
        return outcome[0]

    def _exchange(
        self, frame: AirFrame, wait: float, outcome: list[bytes | None], done: threading.Event
    ) -> None:
        try:
            outcome.append(self.antenna.exchange(frame, wait))
        except AirError:  # silence, garbled, or the carrier went off meanwhile
            outcome.append(None)
        finally:
            done.set()

    def _attempts(self, retries: int) -> Iterator[int]:
        """1 + ``retries`` tries (for ever with FFh, until the host cancels)."""
        attempt = 0
        while retries == FOREVER or attempt <= retries:
            self._check_abort()
            yield attempt
            attempt += 1

    def _in_list_passive_target(self, params: bytes) -> bytes:
        if len(params) < 2 or params[0] < 1:
            raise _Malformed("InListPassiveTarget")
        self._initiator()
        brty, initiator_data = params[1], params[2:]
        if brty == 0:
            found = self._poll_a(initiator_data)
        elif brty in (1, 2):
            found = self._poll_f(("212F", "424F")[brty - 1], initiator_data)
        else:
            found = None  # Type B and Jewel: nothing of that kind in the field
        return b"\x01\x01" + found if found else b"\x00"

    def _first_answer(self, frame: AirFrame, wait: float) -> bytes | None:
        for _ in self._attempts(self._retries[2]):
            answer = self._send(frame, wait)
            if answer is not None:
                return answer
        return None

    def _poll_a(self, uid: bytes) -> bytes | None:
        """SENS_RES(2, as the chip reports it) SEL_RES NFCID1-length NFCID1, or None."""
        self._set_rf_mode(0x80, 0x80)
        self._fifo.clear()
        self._fifo.append(SENS_REQ[0])
        sens_res = self._first_answer(AirFrame("106A", SENS_REQ), SENS_WAIT * self.slack)
        if sens_res is None or len(sens_res) != 2:
            return None
        self._fifo.clear()
        self._fifo.extend(sens_res)
        given = [uid[i : i + 4] for i in range(0, len(uid), 4)]
        nfcid1 = b""
        for level, code in enumerate(CASCADE_LEVELS):
            selected = self._select(code, given[level] if level < len(given) else None)
            if selected is None:
                return None
            part, sel_res = selected
            nfcid1 += part[1:] if part[0] == CASCADE_TAG else part
            if not sel_res & 0x04:  # UID complete
                return bytes([sens_res[1], sens_res[0], sel_res, len(nfcid1)]) + nfcid1
        return None

    def _select(self, code: int, part: bytes | None) -> tuple[bytes, int] | None:
        """One cascade level: SDD_REQ (unless the host gave the UID part), then SEL_REQ."""
        wait = SENS_WAIT * self.slack
        if part is None:
            sdd_res = self._send(AirFrame("106A", bytes([code, 0x20])), wait)
            if sdd_res is None or len(sdd_res) != 5 or _bcc(sdd_res[:4]) != sdd_res[4:]:
                return None
            part = sdd_res[:4]
        sel_res = self._send(AirFrame("106A", bytes([code, 0x70]) + part + _bcc(part)), wait)
        return (part, sel_res[0]) if sel_res is not None and len(sel_res) == 1 else None

    def _poll_f(self, brty: str, sensf_req: bytes) -> bytes | None:
        """The SENSF_RES with its length byte, or None."""
        speed = RATES.index(int(brty[:-1])) << 4
        self._set_rf_mode(0x82 | speed, 0x82 | speed)
        frame = AirFrame(brty, bytes([len(sensf_req) + 1]) + sensf_req)
        answer = self._first_answer(frame, SENSF_WAIT * self.slack)
        if answer is None or len(answer) < 18 or answer[:2] != bytes([len(answer), 1]):
            return None
        return answer

    def _set_rf_mode(self, tx_mode: int, rx_mode: int) -> None:
        self._registers[TX_MODE], self._registers[RX_MODE] = tx_mode, rx_mode

    def _in_communicate_thru(self, params: bytes) -> bytes:
        brty = _brty(self._registers[TX_MODE])
        self._initiator()
        answer = self._send(AirFrame(brty, params), ciu_timeout(self._timings[2], self.slack))
        if answer is None:
            return bytes([TIMEOUT])
        if brty.endswith("A") and not self._registers[RX_MODE] & CRC_EN and not _is_4bit(answer):
            answer += crc_a(answer)  # the host checks the CRC itself
        return bytes([OK]) + answer

    def _in_jump(self, params: bytes) -> bytes:
        """InJumpForDEP/InJumpForPSL: ActPass BR Next [PassiveInitiatorData] [NFCID3i] [Gi]."""
        if len(params) < 3 or params[1] > 2:
            raise _Malformed("InJumpForDEP parameters")
        active, speed, flags = params[:3]
        if not active:
            return bytes([NOT_IN_CONTEXT])  # passive jumps: see the module docstring
        rest = params[3 + (0 if not flags & 1 else 4 if speed == 0 else 5) :]
        nfcid3 = rest[:10] if flags & 2 else os.urandom(10)
        general_bytes = rest[10:] if flags & 2 else rest
        general_bytes = general_bytes if flags & 4 else b""
        atr_req = b"\xd4\x00" + nfcid3 + bytes([0, 0, 0, 0x30 | bool(general_bytes) << 1])
        atr_res = self._atr(("106A", "212F", "424F")[speed], atr_req + general_bytes)
        if atr_res is None:
            return bytes([TIMEOUT])
        mode = CRC_EN | speed << 4 | 0b01  # active-mode framing
        self._set_rf_mode(mode, mode)
        return bytes([OK, 1]) + atr_res[2:]

    def _atr(self, brty: str, atr_req: bytes) -> bytes | None:
        """Send ATR_REQ ``MxRtyATR`` + 1 times; the ATR_RES (from D5 01), or None."""
        self._initiator()
        sync = b"\xf0" if brty == "106A" else b""
        frame = AirFrame(brty, sync + bytes([len(atr_req) + 1]) + atr_req)
        for _ in self._attempts(self._retries[0]):
            answer = self._send(frame, ciu_timeout(self._timings[1], self.slack))
            if answer is not None and answer.startswith(sync):
                answer = answer[len(sync) :]
                if answer[:1] == bytes([len(answer)]) and answer[1:3] == b"\xd5\x01":
                    return answer[1:]
        return None

    # -- target -------------------------------------------------------------------------

    def _rx_brty(self) -> str:
        return _brty(self._registers[RX_MODE])

    def _enter_target_mode(self) -> None:
        if not self._listening:
            self.antenna.listen(self._target)
            self._listening = True

    def _leave_target_mode(self) -> None:
        if self._listening:
            self.antenna.listen(None)
            self._listening = False
        self._target.disarm()
        if self._ciu_target:
            self._ciu_target = self._receiving = False
            self._registers[COMMAND] = CIU_IDLE

    def _tg_init_as_target(self, params: bytes) -> bytes:
        """Mode(1) MIFARE(6) FeliCa(18) NFCID3t(10) LEN Gt LEN Tk → ModeByte + first frame."""
        if len(params) < 37:
            raise _Malformed("TgInitAsTarget parameters")
        self._leave_target_mode()  # including a CIU AutoColl the host programmed
        self._set_carrier(False)
        self._set_rf_mode(0x80, 0x80)  # the firmware prepares AutoColl at 106A
        self._target.arm(params[0], params[1:7], params[7:25])
        self._enter_target_mode()
        try:
            received = self._target.wait(self._abort, first=True)
        except _Cancelled:
            self._leave_target_mode()
            raise
        assert received is not None  # an activation is never released before it is read
        mode_byte, (brty, framing) = self._target.activation()
        rate = RATES.index(int(brty[:-1])) << 4
        self._set_rf_mode(CRC_EN | rate | framing, CRC_EN | rate | framing)
        return bytes([mode_byte]) + self._host_view(received)

    def _tg_get_initiator_command(self, params: bytes) -> bytes:
        received = self._target.wait(self._abort, first=False)
        return bytes([OK]) + self._host_view(received) if received else bytes([RELEASED])

    def _tg_response_to_initiator(self, params: bytes) -> bytes:
        # The driver reprograms RxMode before and TxMode after a PSL_RES: TxMode is the
        # bit rate the answer goes out at.
        sync = self._registers[MODE] & DETECT_SYNC and _brty(self._registers[TX_MODE]) == "106A"
        return bytes([self._target.reply(b"\xf0" + params if sync else params, self.antenna)])

    def _host_view(self, frame: AirFrame) -> bytes:
        sync = self._registers[MODE] & DETECT_SYNC and frame.brty == "106A"
        return frame.data[1:] if sync and frame.data[:1] == b"\xf0" else frame.data

    # -- the CIU as a Type F target: AutoColl, then Transceive ----------------------------

    def _ciu_command(self, value: int) -> None:
        command = value & 0x0F
        if command == CIU_CONFIGURE:  # done at once: the chip is idle again
            self._configuration = bytes(self._fifo[:CONFIGURATION_SIZE]).ljust(
                CONFIGURATION_SIZE, b"\0"
            )
            del self._fifo[:CONFIGURATION_SIZE]
            self._registers[COMMAND] = CIU_IDLE
        elif command == CIU_AUTOCOLL:
            self._auto_coll()
        else:  # Idle (or any other command) ends AutoColl/Transceive
            if self._ciu_target:
                self._leave_target_mode()
            self._registers[COMMAND] = value

    def _auto_coll(self) -> None:
        """(Re)start AutoColl: a passive target at the bit rate of ``CIU_RxMode`` only, with
        the NFC-A and NFC-F parameters of the last Configure command."""
        nfca, nfcf = self._configuration[:6], self._configuration[6:24]
        self._target.arm(_Target.PASSIVE_ONLY, nfca, nfcf, fixed_rate=True)
        self._enter_target_mode()
        self._ciu_target = self._receiving = True
        self._carrier_losses = self._target.carrier_losses
        self._registers[COMMAND] = CIU_AUTOCOLL

    def _ciu_sync(self) -> None:
        """Latch what the CIU's receiver saw since the host last came: the external field
        going off (``RfOffIRq``) and a frame for the FIFO (``RxIRq``, with ``IdleIRq``
        when it ends AutoColl, which then turns into Transceive)."""
        if not self._ciu_target:
            return
        losses = self._target.carrier_losses
        if losses != self._carrier_losses:
            self._carrier_losses = losses
            self._registers[DIV_IRQ] = self._registers.get(DIV_IRQ, 0) | RF_OFF_IRQ
        frame = self._target.poll() if self._receiving else None
        if frame is None:
            return
        self._fifo_put(frame.data)  # a frame over 64 bytes overflows: see the docstring
        ending = IDLE_IRQ if self._registers[COMMAND] == CIU_AUTOCOLL else 0
        self._registers[COMM_IRQ] = self._registers.get(COMM_IRQ, 0) | RX_IRQ | ending
        self._registers[COMMAND] = CIU_TRANSCEIVE
        self._receiving = False  # the frame waits for the host: StartSend or a flush

    def _start_send(self) -> None:
        """StartSend in Transceive: the FIFO goes out as the answer to the frame the host
        got last (lost if the initiator gave up on it); then the receiver is on again."""
        if not self._ciu_target or self._registers[COMMAND] != CIU_TRANSCEIVE:
            return
        data, self._fifo = bytes(self._fifo), bytearray()
        self._target.reply(data, self.antenna)
        self._receiving = True

    def _fifo_put(self, data: bytes) -> None:
        """Into the 64-byte FIFO; what does not fit is lost and sets BufferOvfl and ErrIRq."""
        room = FIFO_SIZE - len(self._fifo)
        self._fifo += data[:room]
        if len(data) > room:
            self._registers[ERROR] = self._registers.get(ERROR, 0) | BUFFER_OVFL
            self._registers[COMM_IRQ] = self._registers.get(COMM_IRQ, 0) | ERR_IRQ

    def _flush_fifo(self) -> None:
        """FlushBuffer empties the FIFO and clears BufferOvfl; a frame the host flushes
        unanswered frees the receiver for the next one."""
        self._fifo.clear()
        self._registers[ERROR] = self._registers.get(ERROR, 0) & ~BUFFER_OVFL
        if self._ciu_target and self._registers[COMMAND] == CIU_TRANSCEIVE:
            self._receiving = True


def _brty(mode_register: int) -> str:
    """The technology a ``CIU_TxMode``/``CIU_RxMode`` value sets (active: A at 106, else F)."""
    rate = RATES[mode_register >> 4 & 0b11]
    framing = mode_register & 0b11
    return f"{rate}{FRAMINGS.get(framing, 'A' if rate == 106 else 'F')}"


def _bcc(uid: bytes) -> bytes:
    return bytes([uid[0] ^ uid[1] ^ uid[2] ^ uid[3]])


def _is_4bit(answer: bytes) -> bool:
    """A Type 2 Tag ACK/NAK: four bits on the air, no CRC."""
    return len(answer) == 1 and answer[0] < 0x10


# -- the target side in the field ---------------------------------------------------------


@dataclass(frozen=True)
class _Received:
    frame: AirFrame
    exchange_id: int


class _Target:
    """The chip in target mode as the field sees it (a ``field.Responder``).

    The field calls :meth:`respond` and :meth:`field_changed` on the initiator's thread;
    the chip's commands wait in :meth:`wait`. A frame that arrives while no command
    waits stays in the chip (the latest one only).
    """

    PASSIVE_ONLY, DEP_ONLY = 0x01, 0x02

    def __init__(self, rx_brty: Callable[[], str]) -> None:
        self.rx_brty = rx_brty
        self._cond = threading.Condition()
        self._armed = False
        self._mode = 0
        self._nfca = b""
        self._nfcf = b""
        self._selected = False
        self._polled_f: str | None = None
        self._activated: tuple[str, bool] | None = None  # (brty, active mode)
        self._dep = False
        self._released = False
        self._inbox: _Received | None = None
        self._owed: int | None = None
        self._fixed_rate = False
        #: How often the external carrier went off (the CIU's RfOffIRq counts on it).
        self.carrier_losses = 0

    def arm(self, mode: int, nfca: bytes, nfcf: bytes, *, fixed_rate: bool = False) -> None:
        """Listen as TgInitAsTarget does (every technology, the mode detector on), or with
        ``fixed_rate`` as the CIU's AutoColl does: at the bit rate of ``CIU_RxMode`` only."""
        with self._cond:
            self.disarm()
            self._armed, self._mode, self._nfca, self._nfcf = True, mode, nfca, nfcf
            self._fixed_rate = fixed_rate

    def disarm(self) -> None:
        with self._cond:
            self._armed = self._selected = self._dep = self._released = False
            self._fixed_rate = False
            self._polled_f = self._activated = self._inbox = self._owed = None

    def activation(self) -> tuple[int, tuple[str, int]]:
        """TgInitAsTarget's mode byte and the (brty, CIU framing bits) of the activation."""
        with self._cond:
            assert self._activated is not None
            brty, active = self._activated
        framing = 0b01 if active else {"A": 0b00, "F": 0b10}[brty[-1]]
        rate = RATES.index(int(brty[:-1])) << 4
        return rate | self._dep << 2 | framing, (brty, framing)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def wait(self, abort: threading.Event, *, first: bool) -> AirFrame | None:
        """The next frame for the host (the activating one if ``first``), None once
        released or when not a target; raises :class:`_Cancelled` when the host cancels."""
        with self._cond:
            while (frame := self._take()) is None:
                if abort.is_set():
                    raise _Cancelled
                if not first and (self._released or self._activated is None):
                    return None
                self._cond.wait(0.1)
            return frame

    def poll(self) -> AirFrame | None:
        """The next frame for the host if one came, without waiting."""
        with self._cond:
            return self._take()

    def _take(self) -> AirFrame | None:
        if self._inbox is None:
            return None
        received, self._inbox = self._inbox, None
        self._owed = received.exchange_id
        return received.frame

    def reply(self, data: bytes, antenna: FieldAntenna) -> int:
        """Send the host's answer to the frame it last got; the command's status byte."""
        with self._cond:
            if self._released or self._activated is None:
                return RELEASED
            owed, self._owed = self._owed, None
        if owed is not None:
            antenna.answer(owed, data)  # False: the initiator gave up; the chip can't know
        return OK

    # -- field.Responder --------------------------------------------------------------------

    def respond(self, frame: AirFrame, exchange_id: int) -> Reply:
        with self._cond:
            if not self._armed or self._released:
                return SILENT
            if self._fixed_rate and frame.brty != self.rx_brty():
                return SILENT
            if self._activated is None:
                reply = self._activate(frame)
            else:
                is_poll = frame.data in (SENS_REQ, ALL_REQ)
                reply = None if frame.brty == self.rx_brty() and not is_poll else SILENT
            if reply is None:
                self._inbox = _Received(frame, exchange_id)
                self._cond.notify_all()
                return LATER
            return reply

    def field_changed(self, on: bool) -> None:
        if on:
            return
        with self._cond:
            self.carrier_losses += 1
            self._selected, self._polled_f = False, None
            if self._activated is not None:
                self._released = True
                self._cond.notify_all()

    def _activate(self, frame: AirFrame) -> Reply | None:
        """Answer activation by itself; None when the frame activates and goes to the host."""
        passive = (self._selected and frame.brty == "106A") or self._polled_f == frame.brty
        if _is_atr_req(frame) and (passive or not self._mode & self.PASSIVE_ONLY):
            self._activated, self._dep = (frame.brty, not passive), True
            return None
        if frame.brty == "106A" and not self._selected:
            return self._nfca_activation(frame.data)
        if frame.brty in ("212F", "424F") and frame.data[:2] == b"\x06\x00":
            return self._nfcf_activation(frame)
        if passive and not self._mode & self.DEP_ONLY:
            self._activated = (frame.brty, False)
            return None
        return SILENT

    def _nfca_activation(self, data: bytes) -> Reply:
        uid = b"\x08" + self._nfca[2:5]
        if data in (SENS_REQ, ALL_REQ):
            return self._nfca[0:2]
        if data == b"\x93\x20":
            return uid + _bcc(uid)
        if data == b"\x93\x70" + uid + _bcc(uid):
            self._selected = True
            return self._nfca[5:6]
        return SILENT

    def _nfcf_activation(self, frame: AirFrame) -> Reply:
        system_code = self._nfcf[16:18]
        wanted = frame.data[2:4]
        if len(frame.data) != 6 or any(
            want not in (0xFF, have) for want, have in zip(wanted, system_code, strict=True)
        ):
            return SILENT
        body = b"\x01" + self._nfcf[:16] + (system_code if frame.data[4] == 1 else b"")
        self._polled_f = frame.brty
        return bytes([len(body) + 1]) + body


def _is_atr_req(frame: AirFrame) -> bool:
    data = frame.data[1:] if frame.brty == "106A" and frame.data[:1] == b"\xf0" else frame.data
    return len(data) >= 17 and data[0] == len(data) and data[1:3] == b"\xd4\x00"


# -- the PN53x's own host frames ----------------------------------------------------------


def start_driver(link: HostLink, init: Callable[[Any], Any], antenna_name: str) -> Any:
    """nfcpy's driver ``init`` over the link's USB seam; the chip stops if the driver fails."""
    try:
        device = init(link.usb)
    except Exception:
        link.usb.close()
        raise
    device._path = f"usb:virtual:{antenna_name}"
    return device


class ChipUsb(VirtualUsb):
    """A :class:`VirtualUsb` that also stops its chip when the driver closes it."""

    def __init__(
        self, host_write: Callable[[bytes], None], *, manufacturer: str, product: str
    ) -> None:
        super().__init__(host_write, manufacturer_name=manufacturer, product_name=product)
        self.chip: Pn53x | None = None

    def close(self) -> None:
        super().close()
        if self.chip is not None:
            self.chip.close()


class HostLink:
    """What stands between the driver's USB transport and the chip (base class)."""

    def __init__(
        self,
        antenna: FieldAntenna,
        model: ChipModel,
        *,
        slack: float,
        manufacturer: str,
        product: str,
    ) -> None:
        self.usb = ChipUsb(self._host_write, manufacturer=manufacturer, product=product)
        self.chip = Pn53x(antenna, model, slack=slack)
        self.usb.chip = self.chip

    def _host_write(self, frame: bytes) -> None:
        raise NotImplementedError

    def _restart(self) -> None:
        """Abort the running command and forget answers the host did not read.

        The host's ACK does this; so does a new command (nfcpy's DEP target sends
        TgGetInitiatorCommand with timeout 0 and never reads its answer)."""
        self.chip.cancel()
        self.usb.drain()


class HostFrames(HostLink):
    """The PN53x host link: normal/extended frames, an ACK for every command, ACK cancels."""

    def _host_write(self, frame: bytes) -> None:
        self._restart()
        if frame == ACK:
            return
        payload = decode_frame(frame)
        if payload is None:
            self.usb.to_host(ERROR_FRAME)
            return
        self.usb.to_host(ACK)
        self.chip.submit(payload, self._answer)

    def _answer(self, payload: bytes | None) -> None:
        self.usb.to_host(encode_frame(payload) if payload is not None else ERROR_FRAME)
