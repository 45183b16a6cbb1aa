"""The emulated Sony RC-S380 (nfcpay/transport/virtual/rcs380.py) behind nfcpy's own driver.

Three parts:

1. **Conformance.** nfcpy's upstream driver tests (``tests/test_clf_rcs380.py`` in
   nfcpy/nfcpy) script the frames a real RC-S380 exchanges with ``nfc.clf.rcs380``. Here the
   same driver calls run against the emulator, with a peer in the virtual field that creates
   the situation each upstream test assumes, and every frame crossing the USB seam is
   compared with upstream's: what the driver writes and what the chip answers. Each test
   names the upstream test it replays; where the emulator's answer differs from the frame
   upstream feeds back, a comment says why (upstream's hand-written frames take shortcuts a
   real chip does not).
2. **Two chips in a field**: NFC-DEP and LLCP between an initiator and a target RC-S380
   through nfcpy's public API, and the failure cases (empty field, a host too late, the
   initiator leaving, frames over 290 bytes).
3. **Type 3 card emulation**: an RC-S380 listening as a FeliCa card, read by another.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import ndef
import nfc
import nfc.clf
import nfc.clf.rcs380
import nfc.dep
import nfc.llcp
import nfc.tag
import nfc.tag.tt3
import pytest
from nfc.clf import LocalTarget, RemoteTarget

from nfcpay.transport.virtual.field import (
    DEFAULT_SLACK,
    SILENT,
    AirFrame,
    Antenna,
    Field,
    Reply,
)
from nfcpay.transport.virtual.rcs380 import Rcs380, open_rcs380
from nfcpay.transport.virtual.usb import VirtualUsb
from tests.support.rcs380 import Poller, hexbytes, running

# -- frames at the USB seam -----------------------------------------------------------------

ACK = bytes.fromhex("0000ff00ff00")
ERROR = bytes.fromhex("0000ff01ff7f8100")


def port100_frame(payload: bytes) -> bytes:
    """An extended port100 frame, built independently of the emulator's encoder."""
    length = len(payload).to_bytes(2, "little")
    lcs = bytes([-sum(length) & 0xFF])
    return b"\x00\x00\xff\xff\xff" + length + lcs + payload + bytes([-sum(payload) & 0xFF, 0])


class Wire:
    """Every frame across a chip's USB seam, as ``(direction, "ack" | payload hex)``.

    Each frame is checked to be well-formed (length, checksums) as it passes.
    """

    def __init__(self, usb: VirtualUsb) -> None:
        self.frames: list[tuple[str, str]] = []
        usb.observers.append(self._seen)

    def _seen(self, direction: str, frame: bytes) -> None:
        if frame in (ACK, ERROR):
            self.frames.append((direction, "ack" if frame == ACK else "error"))
            return
        payload = frame[8:-2]
        assert frame == port100_frame(payload), f"malformed frame {frame.hex()}"
        self.frames.append((direction, payload.hex()))

    def take(self) -> list[tuple[str, str]]:
        frames, self.frames = self.frames, []
        return frames


def compact(text: str) -> str:
    return "".join(text.split()).lower()


def commands(*pairs: tuple[str, str]) -> list[tuple[str, str]]:
    """Upstream's notation: each command (``D6`` omitted) is acknowledged and answered
    (``D7`` omitted). A ``.`` matches any hex digit (recv_timeout values the driver
    computes from the clock)."""
    frames = []
    for command, response in pairs:
        frames += [
            ("out", "d6" + compact(command)),
            ("in", "ack"),
            ("in", "d7" + compact(response)),
        ]
    return frames


def assert_wire(actual: list[tuple[str, str]], expected: list[tuple[str, str]]) -> None:
    """``actual == expected``, where expected payloads are patterns."""
    resolved = [
        frame if pattern[0] == frame[0] and re.fullmatch(pattern[1], frame[1]) else pattern
        for frame, pattern in zip(actual, expected, strict=False)
    ]
    assert actual == resolved + expected[len(resolved) :]


ZEROS_6, ZEROS_18 = "00" * 6, "00" * 18
IN_DEFAULTS = (
    "02 00180101020103000400050006000708080009000a000b000c000e040f001000110012001306",
    "03 00",
)
TG_DEFAULTS = ("42 000101010207", "43 00")
RF_OFF_ERROR_FALSE, RF_OFF_ERROR_TRUE = ("42 0100", "43 00"), ("42 0101", "43 00")


def tg_comm_rf(mdaa: str, recv_timeout: str, data: str = "", guard: str = "0000") -> str:
    """A TgCommRF command: ``mdaa`` is ``""`` or nfca_params + nfcf_params."""
    params = "01 " + mdaa if mdaa else "00 " + ZEROS_6 + ZEROS_18
    return f"48 {guard} ffff {params} 00 00 {recv_timeout} {data}"


# -- the field and the stations in it ---------------------------------------------------------


@dataclass
class Station:
    """An emulated RC-S380 in the field, opened through nfcpy's driver."""

    antenna: Antenna
    clf: nfc.ContactlessFrontend
    wire: Wire

    @property
    def device(self) -> nfc.clf.rcs380.Device:
        return self.clf.device


@pytest.fixture
def field() -> Iterator[Field]:
    field = Field(model_air_time=False)
    yield field
    for antenna in field.antennas:
        antenna.close()


@pytest.fixture
def station(field: Field) -> Iterator[Callable[..., Station]]:
    """``station(name)``: a new RC-S380 in ``field``; closed (RF off) after the test."""
    opened: list[Station] = []

    def open_station(name: str, *, slack: float = DEFAULT_SLACK) -> Station:
        antenna = field.attach(name)
        clf = nfc.ContactlessFrontend()
        clf.device = open_rcs380(antenna, slack=slack)
        clf.device._path = "virtual"
        opened.append(Station(antenna, clf, Wire(clf.device.chipset.transport)))
        return opened[-1]

    yield open_station
    for each in opened:
        each.clf.close()


class Card:
    """A test double for a tag or card: fixed answers to fixed air frames, silent otherwise."""

    def __init__(self, brty: str, answers: dict[str, str]) -> None:
        self.brty = brty
        self.answers = {hexbytes(k): hexbytes(v) for k, v in answers.items()}

    def respond(self, frame: AirFrame, exchange_id: int) -> Reply:
        return self.answers.get(frame.data, SILENT) if frame.brty == self.brty else SILENT

    def field_changed(self, on: bool) -> None:
        pass


def place(field: Field, card: Card) -> None:
    field.attach("card").listen(card)


def crc_a(data: bytes) -> bytes:
    return bytes(nfc.clf.device.Device.add_crc_a(bytearray(data)))[-2:]


def bcc(uid: str) -> str:
    value = 0
    for octet in hexbytes(uid):
        value ^= octet
    return f"{uid}{value:02x}"


# == 1. conformance with upstream's driver tests =============================================
#
# Every command nfcpy's Device sends is replayed below: 2Ah 20h 22h 06h (open, close, mute),
# 00h 02h 04h (sense, send_cmd_recv_rsp), 40h 42h 48h (listen, send_rsp_recv_cmd); 28h is
# Chipset-only. ResetDevice (12h) and TgSetAuto (44h) exist only as Chipset methods nothing
# calls, and get the error frame. Upstream tests not replayed, and why:
# * TestFrame, TestCommunicationError, TestStatusError and TestChipset's encoding tests check
#   the driver's own encoding of arguments, not the chip's answers.
# * The *_receive_errors tests and the first answers of
#   test_listen_dep_returns_tta_card_activation feed TEMPERATURE_ERROR (40h), and
#   test_send_cmd_recv_rsp_with_crca_error a corrupted CRC: a field of whole, intact frames
#   causes neither (the error paths it can cause are tested instead: timeouts, collisions,
#   oversized frames, RF off, a missed send_timeout).
# * test_listen_tta_tt2/tt4_not_activated with answers from other comm types or without
#   activation, and test_listen_dep_invalid_*, _received_wrong_did,
#   _timeout_error_after_atr_res, _in_212_asymmetric_psl_req: the driver's checks of frames
#   the chip passes through unchanged (passing them through is what is tested here).


def test_open_and_close_exchange_upstreams_frames(field: Field) -> None:
    """Upstream: test_driver_init, the ``chipset``/``device`` fixtures and
    TestDevice.test_close. (Upstream also feeds a stale frame left from an earlier session
    to the drain at open; a freshly plugged chip has none.)"""
    chip = Rcs380(field.attach("reader"))
    wire = Wire(chip.usb)
    device = nfc.clf.rcs380.init(chip.usb)
    assert (device.vendor_name, device.product_name) == ("SONY", "RC-S380/P")
    assert device.chipset_name == "NFC Port-100 v1.11"
    assert_wire(
        wire.take(),
        [
            ("out", "ack"),
            *commands(("2a 01", "2b 00"), ("20", "21 1101"), ("22", "23 0001"), ("06 00", "07 00")),
            *commands(("20", "21 1101")),
        ],
    )
    device.close()
    assert_wire(wire.take(), [*commands(("06 00", "07 00")), ("out", "ack")])
    assert chip.usb.closed


def test_open_rcs380_names_the_device(field: Field) -> None:
    device = open_rcs380(field.attach("reader"))
    try:
        assert str(device) == "SONY RC-S380/P NFC Port-100 v1.11 at usb:virtual:reader"
    finally:
        device.close()


def test_command_types_and_mute(station: Callable[..., Station]) -> None:
    """Upstream: TestChipset.test_get_command_type, test_set_command_type, TestDevice.test_mute."""
    reader = station("reader")
    assert reader.device.chipset.get_command_type() == 3
    with pytest.raises(nfc.clf.rcs380.StatusError) as excinfo:
        reader.device.chipset.set_command_type(5)
    assert str(excinfo.value) == "PARAMETER_ERROR"
    reader.device.mute()
    assert_wire(
        reader.wire.take(),
        commands(("28", "29 0000000000000003"), ("2a 05", "2b 01"), ("06 00", "07 00")),
    )


@pytest.mark.parametrize(
    ("code", "params"),
    [(0xF0, ""), (0x04, "00"), (0x48, "0000ffff")],  # Diagnose; InCommRF, TgCommRF cut short
)
def test_commands_the_chip_cannot_take_get_the_error_frame(
    station: Callable[..., Station], code: int, params: str
) -> None:
    reader = station("reader")
    assert reader.device.chipset.send_command(code, hexbytes(params)) is None
    assert reader.wire.take()[-2:] == [("in", "ack"), ("in", "error")]


@pytest.mark.parametrize(
    ("code", "params"),
    [
        (0x00, "020a0f03"),  # InSetRF: no comm type 0Ah
        (0x02, "0d00"),  # InSetProtocol: item 0Dh is reserved
        (0x06, "02"),  # SwitchRF: neither off nor on
        (0x40, "080a"),  # TgSetRF: no comm type 0Ah
        (0x42, "0500"),  # TgSetProtocol: no item 05h
    ],
)
def test_bad_parameters_get_parameter_error(
    station: Callable[..., Station], code: int, params: str
) -> None:
    """Upstream's StatusError tests feed ``xx01`` answers; these are parameters that earn
    them."""
    reader = station("reader")
    assert reader.device.chipset.send_command(code, hexbytes(params)) == b"\x01"


def test_tg_comm_rf_outside_target_mode_is_a_protocol_error(
    station: Callable[..., Station],
) -> None:
    reader = station("reader")
    with pytest.raises(nfc.clf.rcs380.CommunicationError) as excinfo:
        reader.device.chipset.tg_comm_rf(recv_timeout=1)
    assert excinfo.value == "PROTOCOL_ERROR"


SENSE_A = [("00 02030f03", "01 00"), IN_DEFAULTS, ("02 01000200050100060707", "03 00")]
SENSE_B = [("00 03070f07", "01 00"), IN_DEFAULTS, ("02 0b0109010c010a010014", "03 00")]


def sense_f(rf: str) -> list[tuple[str, str]]:
    return [(f"00 {rf}", "01 00"), IN_DEFAULTS, ("02 0018", "03 00")]


def test_sense_with_nobody_in_the_field(station: Callable[..., Station]) -> None:
    """Upstream: test_sense_tta/ttb/ttf_with_no_target_found."""
    reader = station("reader")
    assert reader.device.sense_tta(RemoteTarget("106A")) is None
    assert reader.device.sense_ttb(RemoteTarget("106B")) is None
    assert reader.device.sense_ttf(RemoteTarget("212F")) is None
    assert_wire(
        reader.wire.take(),
        commands(*SENSE_A, ("04 3601 26", "05 80000000"))
        + commands(*SENSE_B, ("04 3601 050010", "05 80000000"))
        + commands(*sense_f("01010f01"), ("04 6e00 0600ffff0100", "05 80000000")),
    )


def test_sense_ttb_at_212_kbps_finds_nobody(station: Callable[..., Station]) -> None:
    """Upstream: test_in_set_rf (212B is ``03080f08``). The virtual field carries no Type B
    above 106 kbps, so the poll times out."""
    reader = station("reader")
    assert reader.device.sense_ttb(RemoteTarget("212B")) is None
    assert_wire(
        reader.wire.take(),
        commands(("00 03080f08", "01 00"), *SENSE_B[1:], ("04 3601 050010", "05 80000000")),
    )


def test_sense_dep_is_refused_before_any_frame(station: Callable[..., Station]) -> None:
    """Upstream: test_sense_dep_is_not_supported (the chip has no active mode)."""
    reader = station("reader")
    with pytest.raises(nfc.clf.UnsupportedTargetError):
        reader.device.sense_dep(RemoteTarget("106A", atr_req=bytes(16)))
    assert reader.wire.take() == []


# Upstream: test_sense_tta_tt2_request_uid_4/_7/_10 (the UID known, SEL_REQ per level).
SELECT_BY_UID = {
    "01020304": [("04 3601 9370 0102030404", "00")],
    "01020304050607": [("04 3601 9370 8801020388", "04"), ("04 3601 9570 0405060700", "00")],
    "01020304050607080910": [
        ("04 3601 9370 8801020388", "04"),
        ("04 3601 9570 880405068f", "04"),
        ("04 3601 9770 0708091016", "00"),
    ],
}


@pytest.mark.parametrize("uid", SELECT_BY_UID)
def test_sense_tta_selects_a_known_uid(
    field: Field, station: Callable[..., Station], uid: str
) -> None:
    levels = SELECT_BY_UID[uid]
    answers = {"26": "4400"} | {compact(command)[6:]: sel for command, sel in levels}
    place(field, Card("106A", answers))
    reader = station("reader")
    target = reader.device.sense_tta(RemoteTarget("106A", sel_req=hexbytes(uid)))
    assert (target.sens_res, target.sdd_res, target.sel_res) == (
        hexbytes("4400"),
        hexbytes(uid),
        hexbytes("00"),
    )
    sel_commands = [(command, f"05 00000000 08 {sel}") for command, sel in levels]
    assert_wire(
        reader.wire.take(),
        commands(
            *SENSE_A,
            ("04 3601 26", "05 00000000 08 4400"),
            ("02 04010708", "03 00"),
            ("02 01010201", "03 00"),
            *sel_commands,
        ),
    )


def test_sense_tta_runs_anticollision(field: Field, station: Callable[..., Station]) -> None:
    """Upstream: test_sense_tta_find_tt2_target_uid_4. Upstream's SDD_RES is the bare UID
    ``01020304``; a real SDD_RES carries the BCC too (``0102030404``, handed over as
    received since the driver switched CRC off), and the driver's SEL_REQ repeats it."""
    place(field, Card("106A", {"26": "4400", "9320": "0102030404", "93700102030404": "00"}))
    reader = station("reader")
    target = reader.device.sense_tta(RemoteTarget("106A"))
    assert target.sdd_res == hexbytes("01020304")
    assert_wire(
        reader.wire.take(),
        commands(
            *SENSE_A,
            ("04 3601 26", "05 00000000 08 4400"),
            ("02 04010708", "03 00"),
            ("02 01000200", "03 00"),
            ("04 3601 9320", "05 00000000 08 0102030404"),
            ("02 01010201", "03 00"),
            ("04 3601 9370 0102030404", "05 00000000 08 00"),
        ),
    )


def test_sense_tta_finds_a_type1_tag(field: Field, station: Callable[..., Station]) -> None:
    """Upstream: test_sense_tta_with_tt1_target_found."""
    place(field, Card("106A", {"26": "000c", "78000000000000": "1148b2565400"}))
    reader = station("reader")
    target = reader.device.sense_tta(RemoteTarget("106A"))
    assert target.rid_res == hexbytes("1148b2565400")
    assert_wire(
        reader.wire.take(),
        commands(
            *SENSE_A,
            ("04 3601 26", "05 00000000 08 000c"),
            ("02 0102020207081102", "03 00"),
            ("04 3601 78000000000000", "05 00000000 08 1148b2565400"),
        ),
    )


def test_sense_tta_finds_a_proprietary_target(
    field: Field, station: Callable[..., Station]
) -> None:
    """Upstream: test_sense_tta_with_proprietary_target (SENS_RES 0000: no RID_CMD)."""
    place(field, Card("106A", {"26": "0000"}))
    reader = station("reader")
    assert reader.device.sense_tta(RemoteTarget("106A")).sens_res == hexbytes("0000")
    assert reader.wire.take()[-3:] == commands(("02 0102020207081102", "03 00"))


@pytest.mark.parametrize(
    ("brty", "answers"),
    [
        ("106A", {"26": "00"}),  # upstream: test_sense_tta_with_response_errors
        # upstream: test_sense_tta_find_tt2_excessive_uid (a cascade bit at every level)
        (
            "106A",
            {"26": "4400", "9320": "8801020388", "93708801020388": "04"}
            | {"9520": "880405068f", "9570880405068f": "04"}
            | {"9720": "0708091016", "97700708091016": "04"},
        ),
        ("106B", {"050010": "51e8253eec00000011008185"}),  # test_sense_ttb_with_response_errors
        ("106B", {"050010": "50e8253eec000000110081"}),
        ("212F", {"0600ffff0100": "110101010701260cca020f0d23042f7783"}),  # ttf_with_response_e.
        ("212F", {"0600ffff0100": "130101010701260cca020f0d23042f7783ff12fc"}),
        ("212F", {"0600ffff0100": "140201010701260cca020f0d23042f7783ff12fc"}),
    ],
)
def test_sense_ignores_malformed_answers(
    field: Field, station: Callable[..., Station], brty: str, answers: dict[str, str]
) -> None:
    place(field, Card(brty, answers))
    reader = station("reader")
    assert reader.clf.sense(RemoteTarget(brty)) is None


def test_sense_ttb_finds_a_type4b_tag(field: Field, station: Callable[..., Station]) -> None:
    """Upstream: test_sense_ttb_with_tt4_target_found."""
    sensb_res = "50e8253eec00000011008185"
    place(field, Card("106B", {"050010": sensb_res}))
    reader = station("reader")
    assert reader.device.sense_ttb(RemoteTarget("106B")).sensb_res == hexbytes(sensb_res)
    assert_wire(
        reader.wire.take(), commands(*SENSE_B, ("04 3601 050010", f"05 00000000 08 {sensb_res}"))
    )


@pytest.mark.parametrize(
    ("brty", "rf", "sensf_req", "sensf_res"),
    [
        ("212F", "01010f01", None, "140101010701260cca020f0d23042f7783ff12fc"),
        ("424F", "01020f02", None, "140101010701260cca020f0d23042f7783ff12fc"),
        ("212F", "01010f01", "00ffff0000", "120101010701260cca020f0d23042f7783ff"),
    ],
)
def test_sense_ttf_finds_a_type3_tag(
    field: Field,
    station: Callable[..., Station],
    brty: str,
    rf: str,
    sensf_req: str | None,
    sensf_res: str,
) -> None:
    """Upstream: test_sense_ttf_with_tt3_target_found, _with_bitrate_type, _with_sensf_req."""
    request = "06" + (sensf_req or "00ffff0100")
    place(field, Card(brty, {request: sensf_res}))
    reader = station("reader")
    target = reader.device.sense_ttf(
        RemoteTarget(brty, sensf_req=hexbytes(sensf_req) if sensf_req else None)
    )
    assert target.sensf_res == hexbytes(sensf_res)[1:]
    assert_wire(
        reader.wire.take(),
        commands(*sense_f(rf), (f"04 6e00 {request}", f"05 00000000 08 {sensf_res}")),
    )


ECHO_A = Card("106A", {"3132": "3334"})


@pytest.mark.parametrize(
    ("target", "card", "setup", "answer"),
    [
        # Upstream: test_send_cmd_recv_rsp_with_dep_target.
        (
            RemoteTarget("106A", sel_res=b"\x60"),
            ECHO_A,
            [*SENSE_A[:2], ("02 04010501", "03 00")],
            "",
        ),
        # Upstream: test_send_cmd_recv_rsp_with_tt2_target: the driver checks CRC_A itself.
        (
            RemoteTarget("106A", sel_res=b"\x00"),
            ECHO_A,
            [*SENSE_A[:2], ("02 040102000501", "03 00")],
            crc_a(b"34").hex(),
        ),
        # Upstream: test_send_cmd_recv_rsp_with_ttb_target.
        (RemoteTarget("106B"), Card("106B", {"3132": "3334"}), SENSE_B, ""),
    ],
)
def test_send_cmd_recv_rsp(
    field: Field,
    station: Callable[..., Station],
    target: RemoteTarget,
    card: Card,
    setup: list[tuple[str, str]],
    answer: str,
) -> None:
    assert crc_a(b"34") == hexbytes("cdf5")  # the CRC_A in upstream's frame
    place(field, card)
    reader = station("reader")
    assert reader.device.send_cmd_recv_rsp(target, b"12", 1.0) == b"34"
    assert_wire(
        reader.wire.take(), commands(*setup, ("04 1a27 3132", f"05 00000000 08 3334{answer}"))
    )


@pytest.mark.parametrize(("timeout", "units"), [(0, "0000"), (1.0, "1a27"), (0.1, "f203")])
def test_send_cmd_recv_rsp_timeouts(
    field: Field, station: Callable[..., Station], timeout: float, units: str
) -> None:
    """Upstream: test_send_cmd_recv_rsp_with_timeout (the 0.001 s case is the next test)."""
    place(field, Card("106B", {"3132": "3334"}))
    reader = station("reader")
    assert reader.device.send_cmd_recv_rsp(RemoteTarget("106B"), b"12", timeout) == b"34"
    assert reader.wire.take()[-3:] == commands((f"04 {units} 3132", "05 00000000 08 3334"))


def test_send_cmd_recv_rsp_to_nobody_times_out(station: Callable[..., Station]) -> None:
    """Upstream: test_send_cmd_recv_rsp_with_error_status (RECEIVE_TIMEOUT_ERROR); 1 ms is
    the shortest timeout the driver sends (``1400``: 2 ms in 0.1 ms units)."""
    reader = station("reader")
    with pytest.raises(nfc.clf.TimeoutError):
        reader.device.send_cmd_recv_rsp(RemoteTarget("106B"), b"12", 0.001)
    assert reader.wire.take()[-3:] == commands(("04 1400 3132", "05 80000000"))


def test_a_type2_ack_comes_back_without_crc(field: Field, station: Callable[..., Station]) -> None:
    """The 4-bit ACK (0Ah) to a Type 2 WRITE carries no CRC: the driver gets it as is."""
    place(field, Card("106A", {"a2040102030405": "0a"}))
    reader = station("reader")
    target = RemoteTarget("106A", sel_res=b"\x00")
    assert reader.device.send_cmd_recv_rsp(target, hexbytes("a2040102030405"), 0.1) == b"\x0a"


@pytest.mark.parametrize(("brty", "crc"), [("106A", "05bf"), ("106B", "6e90"), ("212F", "31c3")])
def test_with_the_crc_check_off_the_host_gets_the_crc(
    field: Field, station: Callable[..., Station], brty: str, crc: str
) -> None:
    """``check_crc=0``: the answer's CRC (CRC_A, CRC_B, FeliCa's) comes with it; the check
    values are the standard ones for ``123456789``."""
    place(field, Card(brty, {"01": b"123456789".hex()}))
    chipset = station("reader").device.chipset
    chipset.in_set_rf(brty)
    chipset.in_set_protocol(chipset.in_set_protocol_defaults)
    chipset.in_set_protocol(check_crc=0, last_byte_bit_count=8)
    assert chipset.in_comm_rf(b"\x01", 10) == b"123456789" + hexbytes(crc)


def test_with_the_crc_check_on_a_4bit_ack_is_a_crc_error(
    field: Field, station: Callable[..., Station]
) -> None:
    """Why nfcpy's Type 2 path switches the check off (rcs380.py's _tt2_send_cmd_recv_rsp)."""
    place(field, Card("106A", {"a2040102030405": "0a"}))
    chipset = station("reader").device.chipset
    chipset.in_set_rf("106A")
    chipset.in_set_protocol(chipset.in_set_protocol_defaults)
    with pytest.raises(nfc.clf.rcs380.CommunicationError) as excinfo:
        chipset.in_comm_rf(hexbytes("a2040102030405"), 10)
    assert excinfo.value == "CRC_ERROR"


def test_a_second_carrier_garbles_the_frame(field: Field, station: Callable[..., Station]) -> None:
    """Upstream's TransmissionError case feeds a PARITY_ERROR, which a field of whole
    bytes cannot produce; a collision (another reader's carrier) is the error it can."""
    place(field, ECHO_A)
    field.attach("other reader").carrier(True)
    reader = station("reader")
    with pytest.raises(nfc.clf.TransmissionError):
        reader.device.send_cmd_recv_rsp(RemoteTarget("106A", sel_res=b"\x60"), b"12", 0.1)
    assert reader.wire.take()[-1] == ("in", "d70508000000")


# -- listen ----------------------------------------------------------------------------------

TT_A = {"sens_res": hexbytes("4400"), "sdd_res": hexbytes("08010203")}
NFCA_TT2, NFCA_TT4 = "4400 010203 00", "4400 010203 20"
IDM_PMM = "0102030405060708 ffffffffffffffff"
DEP_TARGET = {
    "sensf_res": hexbytes("0101FEDA852B1DCDF70000000000000000FFFF"),
    "sens_res": hexbytes("0101"),
    "sel_res": hexbytes("40"),
    "sdd_res": hexbytes("08CE9AD6"),
    "atr_res": hexbytes("D50101FEDA852B1DCDF75354000000083246666D010113"),
}
DEP_MDAA = "0101 ce9ad6 40  01feda852b1dcdf70000000000000000ffff"
ATR_REQ = "d400 30313233343536373839 00000002 aabb"
ATR_RES = "d50101feda852b1dcdf75354000000083246666d010113"


@pytest.mark.parametrize(
    ("listen", "target", "mdaa", "timeout_rsp"),
    [
        # Upstream: test_listen_tta_tt2_not_activated. Upstream answers comm type 00h; the
        # chip reports the type TgSetRF chose (0Bh: 106A), as in upstream's other listens.
        ("tta", LocalTarget("106A", sel_res=b"\x00", **TT_A), NFCA_TT2 + ZEROS_18, "0b"),
        # Upstream: test_listen_ttf_timeout_waiting_for_activation.
        ("ttf", LocalTarget("212F", sensf_res=hexbytes("01" + IDM_PMM + "12fc")), "", "0c"),
        # Upstream: test_listen_dep_timeout_waiting_for_activation.
        ("dep", LocalTarget("106A", **DEP_TARGET), DEP_MDAA, "0b"),
    ],
)
def test_listen_with_nobody_in_the_field(
    station: Callable[..., Station], listen: str, target: LocalTarget, mdaa: str, timeout_rsp: str
) -> None:
    reader = station("reader")
    assert getattr(reader.device, f"listen_{listen}")(target, 0.001) is None
    assert_wire(
        reader.wire.take(),
        commands(
            (f"40 08{timeout_rsp}", "41 00"),
            TG_DEFAULTS,
            RF_OFF_ERROR_FALSE,
            (tg_comm_rf(mdaa, "0100"), f"49 {timeout_rsp}0000 80000000"),
        ),
    )


def activate_a(poller: Poller, nfcid1: str, sel_res: str) -> None:
    """SENS_REQ until the target listens, then SDD and SEL."""
    assert poller.until_answered("106A", "26") in (hexbytes("4400"), hexbytes("0101"))
    assert poller.send("106A", "9320") == hexbytes(bcc(nfcid1))
    assert poller.send("106A", "9370" + bcc(nfcid1)) == hexbytes(sel_res)


def test_listen_tta_as_type2_tag(field: Field, station: Callable[..., Station]) -> None:
    """Upstream: test_listen_tta_tt2_activated. The chip answers SENS/SDD/SEL itself."""
    tag = station("tag")
    poller = Poller(field.attach("reader"))

    def read() -> None:
        activate_a(poller, "08010203", "00")
        assert poller.send("106A", "3132", timeout=0.05) is None  # the host does not answer

    with running(read):
        target = tag.device.listen_tta(LocalTarget("106A", sel_res=b"\x00", **TT_A), 1.0)
    assert target.tt2_cmd == b"12"
    assert_wire(
        tag.wire.take(),
        commands(
            ("40 080b", "41 00"),
            TG_DEFAULTS,
            RF_OFF_ERROR_FALSE,
            (tg_comm_rf(NFCA_TT2 + ZEROS_18, "e803"), "49 0b000300000000 3132"),
            RF_OFF_ERROR_TRUE,
        ),
    )


def test_listen_tta_as_type4_tag(field: Field, station: Callable[..., Station]) -> None:
    """Upstream: test_listen_tta_tt4_activated (default RATS_RES)."""
    tag = station("tag")
    poller = Poller(field.attach("reader"))

    def read() -> None:
        activate_a(poller, "08010203", "20")
        assert poller.send("106A", "e070") == hexbytes("0578807002")
        assert poller.send("106A", "3132", timeout=0.05) is None

    with running(read):
        target = tag.device.listen_tta(LocalTarget("106A", sel_res=b"\x20", **TT_A), 1.0)
    assert target.tt4_cmd == b"12"
    assert_wire(
        tag.wire.take(),
        commands(
            ("40 080b", "41 00"),
            TG_DEFAULTS,
            RF_OFF_ERROR_FALSE,
            (tg_comm_rf(NFCA_TT4 + ZEROS_18, "e803"), "49 0b000300000000 e070"),
            (tg_comm_rf(NFCA_TT4 + ZEROS_18, "....", "0578807002"), "49 0b000300000000 3132"),
            RF_OFF_ERROR_TRUE,
        ),
    )


def test_listen_tta_as_type4_tag_deselected(field: Field, station: Callable[..., Station]) -> None:
    """Upstream: test_listen_tta_tt4_with_deselect: S(DESELECT) is echoed by the host."""
    tag = station("tag")
    poller = Poller(field.attach("reader"))

    def read() -> None:
        activate_a(poller, "08010203", "20")
        assert poller.send("106A", "e070") == hexbytes("0578807002")
        assert poller.send("106A", "c200") == hexbytes("c200")
        assert poller.send("106A", "e070") == hexbytes("0578807002")
        assert poller.send("106A", "3132", timeout=0.05) is None

    with running(read):
        target = tag.device.listen_tta(LocalTarget("106A", sel_res=b"\x20", **TT_A), 1.0)
    assert target.tt4_cmd == b"12"
    answers = [text for direction, text in tag.wire.take() if direction == "in" and text != "ack"]
    assert answers[-5:] == [
        "d7490b000300000000e070",
        "d7490b000300000000c200",
        "d7490b000300000000e070",
        "d7490b0003000000003132",
        "d74300",
    ]


@pytest.mark.parametrize(
    ("sensf_req", "sensf_res"),
    [
        ("00ffff0100", f"14 01 {IDM_PMM} 12fc"),
        ("00ffff0200", f"14 01 {IDM_PMM} 0001"),
        ("0012fc0000", f"12 01 {IDM_PMM}"),
    ],
)
def test_listen_ttf(
    field: Field, station: Callable[..., Station], sensf_req: str, sensf_res: str
) -> None:
    """Upstream: test_listen_ttf_received_sensf_request. The host answers SENSF_REQ itself,
    ignores one for another system code, and returns with the first command for its IDm.
    Upstream starts with an empty frame (no reader sends one) and the foreign SENSF_REQ,
    which needs a reader that knows when the card listens; this one polls until answered
    first, so its sequence is SENSF_REQ, the foreign one, SENSF_REQ again, the command."""
    card = station("card")
    poller = Poller(field.attach("reader"))

    def read() -> None:
        assert poller.until_answered("212F", "06" + sensf_req) == hexbytes(sensf_res)
        assert poller.send("212F", "06 0011220000", timeout=0.05) is None
        assert poller.send("212F", "06" + sensf_req) == hexbytes(sensf_res)
        assert poller.send("212F", "0a 04 0102030405060708", timeout=0.05) is None

    sensf_target = LocalTarget("212F", sensf_res=hexbytes("01" + IDM_PMM + "12fc"))
    with running(read):
        target = card.device.listen_ttf(sensf_target, 1.0)
    assert target.tt3_cmd == hexbytes("04 0102030405060708")
    assert target.sensf_req == hexbytes(sensf_req)
    assert_wire(
        card.wire.take(),
        commands(
            ("40 080c", "41 00"),
            TG_DEFAULTS,
            RF_OFF_ERROR_FALSE,
            (tg_comm_rf("", "e803"), "49 0c000000000000 06" + sensf_req),
            (tg_comm_rf("", "....", sensf_res), "49 0c000000000000 06 0011220000"),
            (tg_comm_rf("", "...."), "49 0c000000000000 06" + sensf_req),
            (tg_comm_rf("", "....", sensf_res), "49 0c000000000000 0a 04 0102030405060708"),
            RF_OFF_ERROR_TRUE,
        ),
    )


DEP_REQ, DEP_RES = "d406 00 3132", "d507 00 3334"


def dep_frame(brty: str, pdu: str) -> str:
    """An NFC-DEP frame on the air: length byte, and the F0h start byte at 106A."""
    length = f"{len(hexbytes(pdu)) + 1:02x}"
    return ("f0" if brty == "106A" else "") + length + compact(pdu)


def activate_dep(poller: Poller, brty: str) -> None:
    """Passive activation (the chip answers), then ATR_REQ (the host answers)."""
    if brty == "106A":
        activate_a(poller, "08ce9ad6", "40")
    else:
        sensf_res = "1401 01feda852b1dcdf7 0000000000000000 ffff"
        assert poller.until_answered(brty, "0600ffff0100") == hexbytes(sensf_res)
    assert poller.send(brty, dep_frame(brty, ATR_REQ)) == hexbytes(dep_frame(brty, ATR_RES))


def exchange_dep_req(poller: Poller, brty: str) -> None:
    """DEP_REQ until the target's host answers it, then leave the field."""
    assert poller.until_answered(brty, dep_frame(brty, DEP_REQ), 0.2) == hexbytes(
        dep_frame(brty, DEP_RES)
    )
    poller.leave()


def listen_dep_then_answer(tag: Station, brty: str) -> LocalTarget:
    """The target side of upstream's listen_dep tests, then one send_rsp_recv_cmd that ends
    with the initiator leaving (upstream: test_send_rsp_recv_cmd_with_error_status)."""
    target = tag.device.listen_dep(LocalTarget("106A", **DEP_TARGET), 1.0)
    assert target.dep_req == hexbytes(DEP_REQ)
    with pytest.raises(nfc.clf.BrokenLinkError):
        tag.device.send_rsp_recv_cmd(target, hexbytes(dep_frame(brty, DEP_RES)), 1.0)
    return target


LISTEN_DEP_START = [("40 080b", "41 00"), TG_DEFAULTS, RF_OFF_ERROR_FALSE]


@pytest.mark.parametrize(("brty", "code"), [("106A", "0b"), ("212F", "0c"), ("424F", "0d")])
def test_listen_dep(field: Field, station: Callable[..., Station], brty: str, code: str) -> None:
    """Upstream: test_listen_dep_in_106_activated_in_106, _in_424_activated_in_424 and
    test_send_rsp_recv_cmd_with_timeout (1.0 s: e803). Upstream answers the DEP_REQ at 424F
    with comm type 0Bh; the chip reports where it heard the frame (0Dh). The initiator
    leaving ends the last TgCommRF with RF_OFF_ERROR, and the chip no longer counts itself
    activated (upstream's frame: 49000000 00040000)."""
    tag = station("tag")
    poller = Poller(field.attach("reader"))

    def initiate() -> None:
        activate_dep(poller, brty)
        exchange_dep_req(poller, brty)

    with running(initiate):
        target = listen_dep_then_answer(tag, brty)
    assert target.brty == brty
    assert_wire(
        tag.wire.take(),
        commands(
            *LISTEN_DEP_START,
            (tg_comm_rf(DEP_MDAA, "e803"), f"49 {code}000300000000 " + dep_frame(brty, ATR_REQ)),
            RF_OFF_ERROR_TRUE,
            (
                tg_comm_rf("", "e803", dep_frame(brty, ATR_RES)),
                f"49 {code}000300000000 " + dep_frame(brty, DEP_REQ),
            ),
            (
                tg_comm_rf("", "e803", dep_frame(brty, DEP_RES), guard="f401"),
                f"49 {code}000000040000",
            ),
        ),
    )


def test_listen_dep_returns_a_type2_activation(
    field: Field, station: Callable[..., Station]
) -> None:
    """Upstream: test_listen_dep_returns_tta_card_activation (SEL_RES 60h: Type 2 Tag and
    NFC-DEP; the reader sends READ instead of ATR_REQ). Upstream first feeds two failed
    TgCommRFs a field cannot cause (TEMPERATURE_ERROR, no activation)."""
    tag = station("tag")
    poller = Poller(field.attach("reader"))

    def read() -> None:
        activate_a(poller, "08ce9ad6", "60")
        assert poller.send("106A", "3000", timeout=0.05) is None

    with running(read):
        card = LocalTarget("106A", **(DEP_TARGET | {"sel_res": hexbytes("60")}))
        target = tag.device.listen_dep(card, 1.0)
    assert (target.tt2_cmd, target.sdd_res) == (hexbytes("3000"), hexbytes("08ce9ad6"))
    assert tag.wire.take()[-6:] == commands(
        (tg_comm_rf(DEP_MDAA.replace(" 40 ", " 60 "), "e803"), "49 0b000300000000 3000"),
        RF_OFF_ERROR_TRUE,
    )


def test_listen_dep_with_parameter_selection(field: Field, station: Callable[..., Station]) -> None:
    """Upstream: test_listen_dep_in_106_activated_to_424. PSL_RES goes out at 106A, then
    the driver tunes to 424F (TgSetRF 0Dh). Upstream reports the 424F DEP_REQ with comm
    type 0Bh; the chip reports 0Dh."""
    tag = station("tag")
    poller = Poller(field.attach("reader"))

    def initiate() -> None:
        activate_dep(poller, "106A")
        psl_res = poller.send("106A", dep_frame("106A", "d404 001203"))
        assert psl_res == hexbytes(dep_frame("106A", "d505 00"))
        exchange_dep_req(poller, "424F")

    with running(initiate):
        target = listen_dep_then_answer(tag, "424F")
    assert (target.brty, target.psl_req) == ("424F", hexbytes("d404001203"))
    assert_wire(
        tag.wire.take(),
        commands(
            *LISTEN_DEP_START,
            (tg_comm_rf(DEP_MDAA, "e803"), "49 0b000300000000 " + dep_frame("106A", ATR_REQ)),
            RF_OFF_ERROR_TRUE,
            (
                tg_comm_rf("", "e803", dep_frame("106A", ATR_RES)),
                "49 0b000300000000 f006 d404001203",
            ),
            (tg_comm_rf("", "0000", "f004 d50500"), "49 0b000300000000"),
            ("40 080d", "41 00"),
            (tg_comm_rf("", "e803"), "49 0d000300000000 " + dep_frame("424F", DEP_REQ)),
            (
                tg_comm_rf("", "e803", dep_frame("424F", DEP_RES), guard="f401"),
                "49 0d000000040000",
            ),
        ),
    )


@pytest.mark.parametrize(("request_", "response"), [("d408", "d509"), ("d40a", "d50b")])
def test_listen_dep_released(
    field: Field, station: Callable[..., Station], request_: str, response: str
) -> None:
    """Upstream: test_listen_dep_in_424_received_dsl_req / _rls_req (upstream's last
    answer has comm type 0Ch after a 424F activation; the chip reports 0Dh)."""
    tag = station("tag")
    poller = Poller(field.attach("reader"))

    def initiate() -> None:
        activate_dep(poller, "424F")
        assert poller.send("424F", "03" + request_) == hexbytes("03" + response)

    with running(initiate):
        assert tag.device.listen_dep(LocalTarget("106A", **DEP_TARGET), 1.0) is None
    assert tag.wire.take()[-6:] == commands(
        (tg_comm_rf("", "e803", dep_frame("424F", ATR_RES)), f"49 0d000300000000 03{request_}"),
        (tg_comm_rf("", "0000", "03" + response), "49 0d000300000000"),
    )


def test_an_answer_past_send_timeout_is_refused(
    field: Field, station: Callable[..., Station]
) -> None:
    """Upstream: test_tg_comm_rf (send_timeout). nfcpy's Device always sends FFFFh (none);
    with a limit (ms, time unit 1), an answer later than limit x slack is not sent."""
    tag = station("tag")
    poller = Poller(field.attach("reader"))

    def initiate() -> None:
        activate_dep(poller, "424F")
        assert poller.send("424F", dep_frame("424F", DEP_REQ)) is None

    with running(initiate):
        tag.device.listen_dep(LocalTarget("106A", **DEP_TARGET), 1.0)
        time.sleep(0.01 * DEFAULT_SLACK + 0.05)
        with pytest.raises(nfc.clf.rcs380.CommunicationError) as excinfo:
            tag.device.chipset.tg_comm_rf(
                send_timeout=10, transmit_data=hexbytes(dep_frame("424F", DEP_RES))
            )
    assert excinfo.value == "TRANSMIT_TIMEOUT_ERROR"


# == 2. two RC-S380s in a field =============================================================


def echo_over_llcp(initiator: Station, target: Station, brs: int) -> tuple[bool, str, str]:
    """A 600-byte message to an echo service and back over a real LLCP link; the result,
    and the bit rates each side ran at."""
    message = bytes(range(256)) * 2 + bytes(range(88))
    brty: dict[str, str] = {}
    done = threading.Event()

    def serve(llc: nfc.llcp.llc.LogicalLinkController) -> None:
        server = nfc.llcp.Socket(llc, nfc.llcp.DATA_LINK_CONNECTION)
        server.setsockopt(nfc.llcp.SO_RCVMIU, 1000)
        server.bind("urn:nfc:sn:echo")
        server.listen(1)
        connection = server.accept()
        connection.send(connection.recv())
        assert connection.recv() is None  # the client disconnected (both closing at once hangs)
        connection.close()
        server.close()

    def ask(llc: nfc.llcp.llc.LogicalLinkController) -> bytes:
        try:
            client = nfc.llcp.Socket(llc, nfc.llcp.DATA_LINK_CONNECTION)
            client.setsockopt(nfc.llcp.SO_RCVMIU, 1000)
            client.connect("urn:nfc:sn:echo")
            client.send(message)
            echo = client.recv()
            client.close()
            return echo
        finally:
            done.set()

    with ThreadPoolExecutor(max_workers=2) as pool:
        work: dict[str, Future[object]] = {}

        def on_connect(role: str, job: Callable[..., object]) -> Callable[..., bool]:
            def start(llc: nfc.llcp.llc.LogicalLinkController) -> bool:
                brty[role] = llc.mac.target.brty
                work[role] = pool.submit(job, llc)
                return True

            return start

        deadline = time.monotonic() + 10

        def target_side() -> object:
            llcp = {"role": "target", "miu": 1024, "on-connect": on_connect("target", serve)}
            return target.clf.connect(llcp=llcp, terminate=lambda: time.monotonic() > deadline)

        with running(target_side) as target_result:
            llcp = {"role": "initiator", "brs": brs, "miu": 1024}
            llcp["on-connect"] = on_connect("initiator", ask)
            assert initiator.clf.connect(llcp=llcp, terminate=done.is_set) is True
        assert target_result.result() is True
        work["target"].result(timeout=5)
        return work["initiator"].result(timeout=5) == message, brty["initiator"], brty["target"]


@pytest.mark.parametrize(("brs", "brty"), [(0, "106A"), (2, "424F")])
def test_llcp_echo_between_two_rcs380s(
    station: Callable[..., Station], field: Field, brs: int, brty: str
) -> None:
    """nfcpy's LLCP over NFC-DEP: the initiator polls 106A, the target's chip answers the
    activation, ATR (and PSL to 424F when brs=2) by nfcpy's driver, then the message is
    chained in 251-byte DEP frames each way. Air time is modelled."""
    field.model_air_time = True
    initiator, target = station("initiator"), station("target")
    assert echo_over_llcp(initiator, target, brs) == (True, brty, brty)


def test_nfc_dep_at_212f(station: Callable[..., Station]) -> None:
    """Activation at 212F (SENSF_REQ answered by the chip) and a chained exchange."""
    initiator, target = station("initiator"), station("target")
    message = bytes(600)

    def target_side() -> bytes | None:
        dep = nfc.dep.Target(target.clf)
        assert dep.activate(timeout=2.0) is not None
        request = dep.exchange(None, 1.0)
        return dep.exchange(request, 1.0)  # the echo; the initiator then releases (None)

    with running(target_side) as result:
        found = initiator.clf.sense(
            RemoteTarget("212F", sensf_req=b"\x00\xff\xff\x00\x00"), iterations=100, interval=0.02
        )
        dep = nfc.dep.Initiator(initiator.clf)
        assert dep.activate(found, brs=1) is not None
        assert (found.brty, dep.exchange(message, 1.0)) == ("212F", message)
        dep.deactivate()
    assert result.result() is None


def test_polling_an_empty_field_finds_nothing_within_the_timeouts(
    station: Callable[..., Station],
) -> None:
    reader = station("reader")
    started = time.monotonic()
    targets = [RemoteTarget("106A"), RemoteTarget("106B"), RemoteTarget("212F")]
    assert reader.clf.sense(*targets) is None
    # Silence costs each poll its whole timeout: 31 + 31 + 11 ms, times the slack.
    assert 0.073 * DEFAULT_SLACK <= time.monotonic() - started < 1.0
    assert not reader.antenna.carrier_on


def test_listening_in_an_empty_field_ends_after_the_timeout(
    station: Callable[..., Station],
) -> None:
    target = station("target", slack=1.0)
    started = time.monotonic()
    assert target.clf.listen(LocalTarget("106A", **DEP_TARGET), 0.1) is None
    assert 0.1 <= time.monotonic() - started < 5, "it ended after the timeout, not never"


def initiate_dep(initiator: Station) -> None:
    """Find the listening target at 106A and exchange ATR_REQ/ATR_RES through clf."""
    assert initiator.clf.sense(RemoteTarget("106A"), iterations=100, interval=0.02)
    atr_res = initiator.clf.exchange(hexbytes(dep_frame("106A", ATR_REQ)), 1.0)
    assert atr_res == hexbytes(dep_frame("106A", ATR_RES))


def record_answers(antenna: Antenna) -> list[bool]:
    """Whether each answer the chip hands its antenna reaches the initiator."""
    heard: list[bool] = []
    answer = antenna.answer

    def recording(exchange_id: int, data: bytes) -> bool:
        heard.append(answer(exchange_id, data))
        return heard[-1]

    antenna.answer = recording  # type: ignore[method-assign]
    return heard


def test_a_host_answering_too_late_is_not_heard(station: Callable[..., Station]) -> None:
    """The initiator's InCommRF waits 51 ms x slack; a target host answering later sends
    into the void (the initiator's driver has raised TimeoutError), as with a real chip."""
    initiator, target = station("initiator"), station("target")
    wait = 0.05
    heard = record_answers(target.antenna)

    def target_host() -> None:
        listened = target.clf.listen(LocalTarget("106A", **DEP_TARGET), 2.0)
        assert listened.dep_req == hexbytes(DEP_REQ)
        request = target.clf.exchange(hexbytes(dep_frame("106A", DEP_RES)), 1.0)
        assert request == hexbytes(dep_frame("106A", "d406 01 3536"))
        time.sleep(wait * DEFAULT_SLACK + 0.2)
        with pytest.raises(nfc.clf.BrokenLinkError):  # after the late answer, RF goes off
            target.clf.exchange(hexbytes(dep_frame("106A", "d507 01 3738")), 1.0)

    with running(target_host):
        initiate_dep(initiator)
        in_time = initiator.clf.exchange(hexbytes(dep_frame("106A", DEP_REQ)), wait)
        assert in_time == hexbytes(dep_frame("106A", DEP_RES))
        with pytest.raises(nfc.clf.TimeoutError):
            initiator.clf.exchange(hexbytes(dep_frame("106A", "d406 01 3536")), wait)
        deadline = time.monotonic() + 5
        while len(heard) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        initiator.clf.close()
    assert heard == [True, True, False]  # ATR_RES, the DEP_RES in time, the late one
    assert target.wire.take()[-1] == ("in", "d7490b000000040000")


def test_the_initiator_leaving_breaks_the_targets_link(station: Callable[..., Station]) -> None:
    """Carrier off ends the target's TgCommRF with RF_OFF_ERROR: BrokenLinkError, at once,
    even when the host waits without a timeout (upstream: test_send_rsp_recv_cmd_with_timeout,
    None: recv_timeout FFFFh)."""
    initiator, target = station("initiator"), station("target")

    def target_host() -> float:
        target.clf.listen(LocalTarget("106A", **DEP_TARGET), 2.0)
        started = time.monotonic()
        with pytest.raises(nfc.clf.BrokenLinkError):
            target.clf.exchange(hexbytes(dep_frame("106A", DEP_RES)), None)
        return time.monotonic() - started

    with running(target_host) as waited:
        initiate_dep(initiator)
        assert initiator.clf.exchange(hexbytes(dep_frame("106A", DEP_REQ)), 1.0)
        initiator.clf.close()
    assert waited.result() < 1.0
    last_command, *_, last_answer = target.wire.take()[-3:]
    assert re.fullmatch(compact(tg_comm_rf("", "ffff", ".*", guard="f401")), last_command[1][2:])
    assert last_answer == ("in", "d7490b000000040000")


def test_initiator_frames_over_290_bytes_are_refused(
    field: Field, station: Callable[..., Station]
) -> None:
    """The driver reports 290 bytes each way; the chip refuses more (PROTOCOL_ERROR sending,
    RECEIVE_LENGTH_ERROR receiving), which the driver raises as TransmissionError."""
    place(field, Card("212F", {"00" * 290: "11" * 290, "01" * 290: "22" * 291}))
    reader = station("reader")
    target = RemoteTarget("212F")
    assert reader.device.get_max_send_data_size(target) == 290
    assert reader.device.send_cmd_recv_rsp(target, bytes(290), 0.1) == hexbytes("11" * 290)
    with pytest.raises(nfc.clf.TransmissionError):
        reader.device.send_cmd_recv_rsp(target, bytes(291), 0.1)
    assert reader.wire.take()[-1] == ("in", "d70501000000")
    with pytest.raises(nfc.clf.TransmissionError):
        reader.device.send_cmd_recv_rsp(target, hexbytes("01" * 290), 0.1)
    assert reader.wire.take()[-1] == ("in", "d70500000080")


def test_target_frames_over_290_bytes_are_refused(
    field: Field, station: Callable[..., Station]
) -> None:
    tag = station("tag")
    poller = Poller(field.attach("reader"))

    def initiate() -> None:
        activate_dep(poller, "424F")
        assert poller.send("424F", dep_frame("424F", DEP_REQ)) == hexbytes(
            dep_frame("424F", DEP_RES)
        )
        assert poller.send("424F", bytes(291), timeout=0.05) is None

    with running(initiate):
        target = tag.device.listen_dep(LocalTarget("106A", **DEP_TARGET), 1.0)
        with pytest.raises(nfc.clf.TransmissionError):
            tag.device.send_rsp_recv_cmd(target, hexbytes(dep_frame("424F", DEP_RES)), 1.0)
    assert tag.wire.take()[-1] == ("in", "d7490d000300000080")
    with pytest.raises(nfc.clf.TransmissionError):
        tag.device.send_rsp_recv_cmd(target, bytes(291), 0.01)
    assert tag.wire.take()[-1] == ("in", "d7490d000301000000")


# == 3. Type 3 card emulation ===============================================================

NDEF_MESSAGE = [ndef.TextRecord("paid by a virtual FeliCa card, " * 3)]


def type3_ndef_blocks(message: bytes) -> list[bytes]:
    """The Type 3 Tag attribute block and the NDEF data blocks (NFC Forum T3T 1.0)."""
    blocks = -(-len(message) // 16)
    attributes = bytes([0x10, 4, 1]) + blocks.to_bytes(2, "big") + bytes(4)
    attributes += bytes([0, 0]) + len(message).to_bytes(3, "big")
    attributes += sum(attributes).to_bytes(2, "big")
    data = message + bytes(blocks * 16 - len(message))
    return [attributes] + [data[i : i + 16] for i in range(0, len(data), 16)]


def test_type3_card_emulation_read_by_another_rcs380(station: Callable[..., Station]) -> None:
    """nfcpy's card emulation (``connect(card=...)``: listen_ttf, then Type3TagEmulation)
    read by nfcpy's Type 3 reader code on a second RC-S380 at 212F."""
    card, reader = station("card"), station("reader")
    blocks = type3_ndef_blocks(b"".join(ndef.message_encoder(NDEF_MESSAGE)))
    sensf_res = hexbytes("01 02fe010203040506 ffffffffffffffff 12fc")

    def on_startup(target: LocalTarget) -> LocalTarget:
        return LocalTarget("212F", sensf_res=sensf_res)

    def on_connect(tag: nfc.tag.tt3.Type3TagEmulation) -> bool:
        tag.add_service(0x000B, lambda block, rb, re: blocks[block], None)
        return True

    def emulate() -> object:
        card_options = {"on-startup": on_startup, "on-connect": on_connect, "timeout": 2.0}
        deadline = time.monotonic() + 10
        return card.clf.connect(card=card_options, terminate=lambda: time.monotonic() > deadline)

    with running(emulate) as emulated:
        found = reader.clf.sense(RemoteTarget("212F"), iterations=100, interval=0.02)
        assert found.sensf_res == sensf_res
        tag = nfc.tag.activate(reader.clf, found)
        assert isinstance(tag, nfc.tag.tt3.Type3Tag)
        assert tag.ndef.records == NDEF_MESSAGE
        reader.clf.close()  # the reader leaves: the card's link breaks and connect returns
    assert emulated.result() is True
