"""An emulated Sony RC-S380 (NFC Port-100 chipset) behind nfcpy's own ``rcs380`` driver.

nfcpay's counters run nfcpy's real driver, so this module emulates the *chip*, not the
driver: :class:`Rcs380` takes the port100 frames ``nfc.clf.rcs380`` writes to its USB
transport (``00 00 FF FF FF LEN(LE) LCS D6 cmd … DCS 00``), acknowledges each with
``00 00 FF 00 FF 00`` and answers ``D7 cmd+1 …``, and meets other chips and virtual tags in a
virtual RF field (:mod:`nfcpay.transport.virtual.field`). :func:`open_rcs380` hands back the
``nfc.clf.rcs380.Device`` that ``nfc.clf.rcs380.init`` builds over it.

What the chip does here, as nfcpy's driver and upstream's driver tests expect it:

* **Initiator** (``InSetRF``/``InSetProtocol``/``InCommRF``): the carrier comes on with the
  first ``InCommRF``; a one-byte frame with ``last_byte_bit_count=7`` goes out as a short
  frame (SENS_REQ, ALL_REQ); the answer comes back as ``status(4) 08 data`` or with a
  communication error (RECEIVE_TIMEOUT when nobody answers within the command's timeout,
  given in 0.1 ms units). ``add_crc``/``check_crc`` decide what the host sees of the CRC:
  with ``check_crc=0`` (nfcpy's Type 2 Tag path) the CRC the answer carried on the air is
  handed to the host, who checks it; with ``check_crc=1`` an answer that carried no CRC (a
  4-bit ACK/NAK) fails with CRC_ERROR — which is why nfcpy switches the check off.
* **Target** (``TgSetRF``/``TgSetProtocol``/``TgCommRF``): the chip hears the field only
  while a ``TgCommRF`` receives (``recv_timeout`` ms): a frame sent to it at any other time
  is lost, as on the real chip (after PSL_RES, say; nfcpy's DEP layer recovers with ATN).
  With ``mdaa`` it answers activation by itself — SENS_REQ/SDD_REQ/SEL_REQ at 106A from
  ``nfca_params`` (UID ``08`` + three bytes), SENSF_REQ at 212F/424F from ``nfcf_params`` —
  and hands the first frame after activation to the host as ``comm_type 00 03 status(4)
  frame``, ``comm_type`` being where it heard the frame. The host's next ``TgCommRF``
  carries the answer (delivered through :meth:`Antenna.answer`, so an answer later than the
  initiator's deadline is lost) and starts receiving before the answer goes out. With
  ``rf_off_error`` set, the initiator's carrier going off ends the command with
  RF_OFF_ERROR. ``send_timeout`` (ms with time unit 1, 0.1 ms with unit 0, ``FFFF`` for
  none) refuses an answer the host gives too late (TRANSMIT_TIMEOUT_ERROR).
* **Limits**: 290 bytes of RF data each way (what the driver reports; more is refused with
  PROTOCOL_ERROR or RECEIVE_LENGTH_ERROR); every time limit the chip keeps is multiplied by
  ``slack`` (see ``field.DEFAULT_SLACK``).

Commands run in the thread of the driver's ``write``: nfcpy writes one command and then
reads the ACK and the answer, so answering before ``write`` returns is indistinguishable to
it, needs no thread of our own, and every read finds its frame waiting. An ACK from the
host cancels: unread answers are dropped.

Not emulated, and why: active-mode NFC-DEP (the chip has none; the driver refuses it first);
``guard_time`` (a minimum delay before the answer, short against a Python host's turnaround);
the carrier's initial guard time; parity and bit-oriented anticollision (the air frames carry
whole bytes); HLTA and ``mf_halted``, the Type 1 Tag framing options; ResetDevice,
Diagnose and the other commands nfcpy's ``Device`` never sends (they get the error frame).
"""

from __future__ import annotations

import enum
import struct
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import nfc.clf.device
import nfc.clf.rcs380

from nfcpay.transport.virtual.field import (
    BIT_RATES,
    DEFAULT_SLACK,
    LATER,
    SILENT,
    AirCollision,
    AirFrame,
    AirTimeout,
    FieldAntenna,
    Reply,
)
from nfcpay.transport.virtual.usb import VirtualUsb

MANUFACTURER = "SONY"
PRODUCT = "RC-S380/P"

#: The frame the chip acknowledges every command with; from the host, it cancels.
ACK = bytes.fromhex("0000ff00ff00")
#: What the chip answers a frame it cannot take (bad checksum, unknown command).
ERROR_FRAME = bytes.fromhex("0000ff01ff7f8100")
#: RF data the chip sends or receives in one frame (``get_max_send_data_size``).
MAX_RF_DATA = 290

FIRMWARE_VERSION = bytes.fromhex("1101")  # v1.11, little-endian minor/major
PD_DATA_VERSION = bytes.fromhex("0001")
COMMAND_TYPES = 0b11  # command types 0 and 1

SUCCESS, PARAMETER_ERROR = b"\x00", b"\x01"

IN_COMM_TYPES = {1: "212F", 2: "424F", 3: "106A", 4: "212A", 5: "424A", 7: "106B"}
IN_COMM_TYPES |= {8: "212B", 9: "424B"}
TG_COMM_TYPES = {0x0B: "106A", 0x0C: "212F", 0x0D: "424F", 0x0E: "212A", 0x0F: "424A"}
TG_COMM_CODES = {brty: code for code, brty in TG_COMM_TYPES.items()}


def _pairs(text: str) -> dict[int, int]:
    """``{item: value}`` from hex ``item value`` pairs."""
    octets = bytes.fromhex(text)
    return dict(zip(octets[::2], octets[1::2], strict=True))


# InSetProtocol items 00h-13h (0Dh is reserved) and the values the chip starts with: the
# settings nfcpy's driver sends before every use anyway.
IN_PROTOCOL_DEFAULTS = _pairs(
    "0018 0101 0201 0300 0400 0500 0600 0708 0800 0900 0A00 0B00 0C00"
    + " 0E04 0F00 1000 1100 1200 1306"
)
ADD_CRC, CHECK_CRC, LAST_BYTE_BIT_COUNT = 0x01, 0x02, 0x07
# TgSetProtocol items.
SEND_TIME_UNIT, RF_OFF_ERROR = 0x00, 0x01
TG_PROTOCOL_DEFAULTS = _pairs("0001 0101 0207")

TG_COMM_RF_HEADER = struct.Struct("<HH?6s18s??H")
NO_SEND_TIMEOUT = 0xFFFF


class CommStatus(enum.IntFlag):
    """The four status bytes of InCommRF and TgCommRF (nfcpy's CommunicationError)."""

    OK = 0
    PROTOCOL_ERROR = 0x00000001
    CRC_ERROR = 0x00000004
    COLLISION_ERROR = 0x00000008
    RECEIVE_TIMEOUT_ERROR = 0x00000080
    RF_OFF_ERROR = 0x00000400
    TRANSMIT_TIMEOUT_ERROR = 0x00000800
    RECEIVE_LENGTH_ERROR = 0x80000000

    def encode(self) -> bytes:
        return struct.pack("<L", self)


def encode_frame(payload: bytes) -> bytes:
    """A port100 extended frame around ``payload``."""
    length = struct.pack("<H", len(payload))
    checksums = bytes([-sum(payload) & 0xFF, 0])
    return b"\x00\x00\xff\xff\xff" + length + bytes([-sum(length) & 0xFF]) + payload + checksums


def decode_frame(frame: bytes) -> bytes | None:
    """The payload of a well-formed extended frame, or None."""
    if frame[:5] != b"\x00\x00\xff\xff\xff" or len(frame) < 10:
        return None
    length = int.from_bytes(frame[5:7], "little")
    payload = frame[8 : 8 + length]
    if len(frame) != length + 10 or sum(frame[5:8]) & 0xFF or frame[-1] != 0:
        return None
    return payload if (sum(payload) + frame[-2]) & 0xFF == 0 else None


def open_rcs380(antenna: FieldAntenna, *, slack: float = DEFAULT_SLACK) -> nfc.clf.rcs380.Device:
    """nfcpy's RC-S380 driver over a fresh emulated RC-S380 in ``antenna``'s field.

    Closing the device switches the chip's RF off, which releases the antenna.
    """
    device = nfc.clf.rcs380.init(Rcs380(antenna, slack=slack).usb)
    device._path = f"usb:virtual:{antenna.name}"
    return device


class _Malformed(Exception):
    """A command the chip cannot parse: it answers with the error frame."""


class Rcs380:
    """The chip: host frames in through :attr:`usb`, RF through the antenna."""

    def __init__(self, antenna: FieldAntenna, *, slack: float = DEFAULT_SLACK) -> None:
        self.antenna = antenna
        self.slack = slack
        self.usb = VirtualUsb(
            self._host_write, manufacturer_name=MANUFACTURER, product_name=PRODUCT
        )
        self._lock = threading.Lock()
        self._listener = _Listener()
        self._owed: _Received | None = None
        self._listening = False
        self._send_brty: str | None = None  # InSetRF's; answers come back at the same rate
        self._in_protocol = dict(IN_PROTOCOL_DEFAULTS)
        self._tg_protocol = dict(TG_PROTOCOL_DEFAULTS)
        self._commands: dict[int, Callable[[bytes], bytes]] = {
            0x00: self._in_set_rf,
            0x02: self._in_set_protocol,
            0x04: self._in_comm_rf,
            0x06: self._switch_rf,
            0x20: self._get_firmware_version,
            0x22: self._get_pd_data_version,
            0x28: self._get_command_type,
            0x2A: self._set_command_type,
            0x40: self._tg_set_rf,
            0x42: self._tg_set_protocol,
            0x48: self._tg_comm_rf,
        }

    # -- host side ----------------------------------------------------------------------

    def _host_write(self, frame: bytes) -> None:
        if frame == ACK:
            self.usb.drain()
            return
        payload = decode_frame(frame)
        if payload is None or len(payload) < 2 or payload[0] != 0xD6:
            self.usb.to_host(ERROR_FRAME)
            return
        with self._lock:
            self.usb.to_host(ACK)
            self.usb.to_host(self._run(payload[1], payload[2:]))

    def _run(self, code: int, params: bytes) -> bytes:
        command = self._commands.get(code)
        try:
            if command is None:
                raise _Malformed(f"command {code:02X}h")
            return encode_frame(bytes([0xD7, code + 1]) + command(params))
        except _Malformed:
            return ERROR_FRAME

    # -- device commands ----------------------------------------------------------------

    def _switch_rf(self, params: bytes) -> bytes:
        if params not in (b"\x00", b"\x01"):
            return PARAMETER_ERROR
        self._leave_target_mode()
        self.antenna.carrier(params == b"\x01")
        return SUCCESS

    def _get_firmware_version(self, params: bytes) -> bytes:
        return FIRMWARE_VERSION  # whichever firmware the option byte asks about

    def _get_pd_data_version(self, params: bytes) -> bytes:
        return PD_DATA_VERSION

    def _get_command_type(self, params: bytes) -> bytes:
        return COMMAND_TYPES.to_bytes(8, "big")

    def _set_command_type(self, params: bytes) -> bytes:
        supported = len(params) == 1 and params[0] < 64 and COMMAND_TYPES >> params[0] & 1
        return SUCCESS if supported else PARAMETER_ERROR

    # -- initiator ----------------------------------------------------------------------

    def _in_set_rf(self, params: bytes) -> bytes:
        if len(params) != 4 or not {params[1], params[3]} <= IN_COMM_TYPES.keys():
            return PARAMETER_ERROR
        self._leave_target_mode()
        self._send_brty = IN_COMM_TYPES[params[1]]
        return SUCCESS

    def _in_set_protocol(self, params: bytes) -> bytes:
        items = _protocol_items(params, IN_PROTOCOL_DEFAULTS.keys())
        if items is None:
            return PARAMETER_ERROR
        self._in_protocol.update(items)
        return SUCCESS

    def _in_comm_rf(self, params: bytes) -> bytes:
        if len(params) < 2:
            raise _Malformed("InCommRF without timeout")
        units = int.from_bytes(params[:2], "little") or 0xFFFF  # 0: the longest it can wait
        data = params[2:]
        if self._send_brty is None or self._listening or len(data) > MAX_RF_DATA:
            return CommStatus.PROTOCOL_ERROR.encode()
        answer = self._transceive(self._send_brty, data, units / 10000 * self.slack)
        if isinstance(answer, CommStatus):
            return answer.encode()
        return CommStatus.OK.encode() + b"\x08" + answer

    def _transceive(self, brty: str, data: bytes, timeout: float) -> bytes | CommStatus:
        if brty not in BIT_RATES:  # 212B/424B: nothing in the field speaks them
            time.sleep(timeout)
            return CommStatus.RECEIVE_TIMEOUT_ERROR
        self.antenna.carrier(True)
        try:
            answer = self.antenna.exchange(AirFrame(brty, self._on_air(data)), timeout)
        except AirTimeout:
            return CommStatus.RECEIVE_TIMEOUT_ERROR
        except AirCollision:
            return CommStatus.COLLISION_ERROR
        if len(answer) > MAX_RF_DATA:
            return CommStatus.RECEIVE_LENGTH_ERROR
        return self._host_view(brty, data, answer)

    def _on_air(self, data: bytes) -> bytes:
        if len(data) == 1 and self._in_protocol[LAST_BYTE_BIT_COUNT] == 7:
            return bytes([data[0] & 0x7F])  # a short frame: SENS_REQ or ALL_REQ
        return data

    def _host_view(self, brty: str, sent: bytes, answer: bytes) -> bytes | CommStatus:
        """What the host sees of an answer's CRC (air frames carry none: see the docstring)."""
        with_crc = self._in_protocol[ADD_CRC] != 0 and not _is_4bit(brty, sent, answer)
        if self._in_protocol[CHECK_CRC]:
            return answer if with_crc else CommStatus.CRC_ERROR
        return _ADD_CRC[brty[-1]](answer) if with_crc else answer

    # -- target -------------------------------------------------------------------------

    def _tg_set_rf(self, params: bytes) -> bytes:
        if len(params) != 2 or params[1] not in TG_COMM_TYPES:
            return PARAMETER_ERROR
        if not self._listening:
            self.antenna.carrier(False)
            self._listener.reset(rf_off=not self.antenna.external_field)
            self.antenna.listen(self._listener)
            self._listening = True
        self._listener.tune(TG_COMM_TYPES[params[1]])
        return SUCCESS

    def _tg_set_protocol(self, params: bytes) -> bytes:
        items = _protocol_items(params, TG_PROTOCOL_DEFAULTS.keys())
        if items is None:
            return PARAMETER_ERROR
        self._tg_protocol.update(items)
        return SUCCESS

    def _tg_comm_rf(self, params: bytes) -> bytes:
        if len(params) < TG_COMM_RF_HEADER.size:
            raise _Malformed("TgCommRF header")
        _, send_timeout, mdaa, nfca, nfcf, _, _, recv_timeout = TG_COMM_RF_HEADER.unpack_from(
            params
        )
        data = params[TG_COMM_RF_HEADER.size :]
        owed, self._owed = self._owed, None
        if not recv_timeout:
            return self._tg_reply(self._tg_send(owed, data, send_timeout))
        # Receiving starts before the answer goes out: the initiator's next frame may follow
        # the answer at once, and the chip must not miss it.
        self._listener.arm(_AutoActivation(nfca, nfcf) if mdaa else None)
        try:
            status = self._tg_send(owed, data, send_timeout)
            if status:
                return self._tg_reply(status)
            return self._tg_receive(recv_timeout / 1000 * self.slack)
        finally:
            self._listener.disarm()

    def _tg_receive(self, timeout: float) -> bytes:
        received = self._listener.receive(timeout, bool(self._tg_protocol[RF_OFF_ERROR]))
        if isinstance(received, CommStatus):
            return self._tg_reply(received)
        if len(received.frame.data) > MAX_RF_DATA:
            return self._tg_reply(CommStatus.RECEIVE_LENGTH_ERROR)
        self._owed = received
        return self._tg_reply(CommStatus.OK, received.frame)

    def _tg_send(self, owed: _Received | None, data: bytes, send_timeout: int) -> CommStatus:
        if not self._listening or len(data) > MAX_RF_DATA:
            return CommStatus.PROTOCOL_ERROR
        if self._tg_protocol[RF_OFF_ERROR] and self._listener.rf_off:
            return CommStatus.RF_OFF_ERROR
        if not data or owed is None:
            return CommStatus.OK  # nothing to answer: the chip sends to no one
        if time.monotonic() - owed.ended > self._send_limit(send_timeout):
            return CommStatus.TRANSMIT_TIMEOUT_ERROR
        self.antenna.answer(owed.exchange_id, data)  # False: the initiator gave up
        return CommStatus.OK

    def _send_limit(self, send_timeout: int) -> float:
        if send_timeout == NO_SEND_TIMEOUT:
            return float("inf")
        unit = 0.001 if self._tg_protocol[SEND_TIME_UNIT] else 0.0001
        return send_timeout * unit * self.slack

    def _tg_reply(self, status: CommStatus, frame: AirFrame | None = None) -> bytes:
        brty, activated = self._listener.state()
        code = TG_COMM_CODES[frame.brty if frame else brty]
        data = frame.data if frame else b""
        return bytes([code, 0, 3 if activated else 0]) + status.encode() + data

    def _leave_target_mode(self) -> None:
        if self._listening:
            self.antenna.listen(None)
            self._listening = False
        self._owed = None


def _protocol_items(params: bytes, known: Collection[int]) -> dict[int, int] | None:
    """``{item: value}`` from InSetProtocol/TgSetProtocol pairs, or None if malformed."""
    if len(params) % 2:
        return None
    items = dict(zip(params[::2], params[1::2], strict=True))
    return items if all(item in known for item in items) else None


def _is_4bit(brty: str, sent: bytes, answer: bytes) -> bool:
    """Whether ``answer`` was a 4-bit ACK/NAK (no CRC) rather than a SEL_RES (with CRC)."""
    sel_req = len(sent) == 7 and sent[0] in (0x93, 0x95, 0x97) and sent[1] == 0x70
    return brty.endswith("A") and len(answer) == 1 and answer[0] < 0x10 and not sel_req


def _add_crc_f(data: bytes) -> bytes:
    crc = 0
    for octet in data:
        crc ^= octet << 8
        for _ in range(8):
            crc = (crc << 1 ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return data + crc.to_bytes(2, "big")


_ADD_CRC: dict[str, Callable[[bytes], bytes]] = {
    "A": lambda data: bytes(nfc.clf.device.Device.add_crc_a(bytearray(data))),
    "B": lambda data: bytes(nfc.clf.device.Device.add_crc_b(bytearray(data))),
    "F": _add_crc_f,
}


# -- the target side in the field ---------------------------------------------------------


@dataclass(frozen=True)
class _Received:
    """A frame the chip received for its host, and the exchange its answer belongs to."""

    frame: AirFrame
    exchange_id: int
    ended: float


@dataclass(frozen=True)
class _AutoActivation:
    """TgCommRF's ``mdaa`` parameters: what the chip answers activation with by itself."""

    nfca: bytes  # SENS_RES(2) NFCID1 bytes 2-4 (3) SEL_RES(1)
    nfcf: bytes  # IDm(8) PMm(8) system code(2)

    @property
    def sdd_res(self) -> bytes:
        uid = b"\x08" + self.nfca[2:5]  # a random 4-byte UID starts with 08h
        return uid + bytes([uid[0] ^ uid[1] ^ uid[2] ^ uid[3]])

    def sensf_res(self, request: bytes, brty: str) -> bytes | None:
        """The answer to SENSF_REQ ``len 00 SC RC TSN``, None if the system code differs."""
        system_code = self.nfcf[16:18]
        if any(
            want not in (0xFF, have) for want, have in zip(request[2:4], system_code, strict=True)
        ):
            return None
        request_data = {1: system_code, 2: bytes([0, 1 << (brty == "424F")])}
        body = b"\x01" + self.nfcf[:16] + request_data.get(request[4], b"")
        return bytes([len(body) + 1]) + body


class _NfcA(enum.Enum):
    IDLE = "idle"
    READY = "ready"
    ACTIVE = "active"


SENS_REQ, ALL_REQ, SDD_REQ_CL1 = b"\x26", b"\x52", b"\x93\x20"


class _Listener:
    """The chip in target mode as the field sees it (a ``field.Responder``).

    The field calls :meth:`respond` and :meth:`field_changed` from the initiator's thread;
    the host's TgCommRF waits in :meth:`receive`. The chip hears frames only while a
    TgCommRF receives (between :meth:`arm` and :meth:`disarm`), and takes one frame per
    command: a frame sent to it at any other time is lost, as on the real chip.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._brty = "106A"
        self._auto: _AutoActivation | None = None
        self._receiving = False
        self._nfca = _NfcA.IDLE
        self._activated = False
        self._inbox: _Received | None = None
        self._rf_off = False

    def reset(self, *, rf_off: bool) -> None:
        with self._cond:
            self._deactivate()
            self._rf_off = rf_off

    def tune(self, brty: str) -> None:
        with self._cond:
            self._brty = brty

    def state(self) -> tuple[str, bool]:
        with self._cond:
            return self._brty, self._activated

    @property
    def rf_off(self) -> bool:
        """Whether the initiator's carrier went off since the chip last heard a frame."""
        with self._cond:
            return self._rf_off

    def arm(self, auto: _AutoActivation | None) -> None:
        """Start receiving; with ``auto``, answer activation without the host."""
        with self._cond:
            self._receiving, self._auto, self._inbox = True, auto, None

    def disarm(self) -> None:
        with self._cond:
            self._receiving, self._auto, self._inbox = False, None, None

    def receive(self, timeout: float, rf_off_error: bool) -> _Received | CommStatus:
        """The frame for the host, or why none came within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._inbox is not None:
                    return self._inbox
                if rf_off_error and self._rf_off:
                    return CommStatus.RF_OFF_ERROR
                left = deadline - time.monotonic()
                if left <= 0:
                    return CommStatus.RECEIVE_TIMEOUT_ERROR
                self._cond.wait(left)

    # -- field.Responder ------------------------------------------------------------------

    def respond(self, frame: AirFrame, exchange_id: int) -> Reply:
        with self._cond:
            if not self._receiving or self._inbox is not None:
                return SILENT
            reply = self._hear(frame)
            if reply is None:
                self._inbox = _Received(frame, exchange_id, time.monotonic())
                self._cond.notify_all()
                reply = LATER
            if reply is not SILENT:
                self._rf_off = False
            return reply

    def field_changed(self, on: bool) -> None:
        if on:
            return
        with self._cond:
            self._deactivate()
            self._rf_off = True
            self._cond.notify_all()

    def _deactivate(self) -> None:
        self._nfca = _NfcA.IDLE
        self._activated = False

    def _hear(self, frame: AirFrame) -> Reply | None:
        """An automatic answer, SILENT, or None: the frame is for the host."""
        if self._auto is None:
            return None if frame.brty == self._brty else SILENT
        if frame.brty == "106A" and self._nfca is not _NfcA.ACTIVE:
            return self._nfca_activation(self._auto, frame.data)
        if frame.brty in ("212F", "424F") and frame.data[:2] == b"\x06\x00":
            return self._nfcf_activation(self._auto, frame)
        return None if self._activated and frame.brty == self._brty else SILENT

    def _nfca_activation(self, auto: _AutoActivation, data: bytes) -> Reply:
        if data in (SENS_REQ, ALL_REQ) and self._nfca is _NfcA.IDLE:
            self._nfca = _NfcA.READY
            return auto.nfca[0:2]
        if self._nfca is _NfcA.READY and data == SDD_REQ_CL1:
            return auto.sdd_res
        if self._nfca is _NfcA.READY and data == b"\x93\x70" + auto.sdd_res:
            self._nfca, self._activated, self._brty = _NfcA.ACTIVE, True, "106A"
            return auto.nfca[5:6]
        return SILENT

    def _nfcf_activation(self, auto: _AutoActivation, frame: AirFrame) -> Reply:
        sensf_res = auto.sensf_res(frame.data, frame.brty) if len(frame.data) == 6 else None
        if sensf_res is None:
            return SILENT
        self._activated, self._brty = True, frame.brty
        return sensf_res
