"""The emulated SCL3711 (PN533, nfcpay/transport/virtual/pn533.py) behind nfcpy's own driver.

1. **Conformance.** nfcpy's upstream driver tests (``tests/test_clf_pn533.py`` and
   ``tests/base_clf_pn53x.py`` in nfcpy/nfcpy) script the frames a real PN533 exchanges
   with ``nfc.clf.pn533``. Here the same driver calls run against the emulator, with a
   peer in the virtual field creating the situation each upstream test assumes, and every
   frame crossing the USB seam is compared with upstream's. Where upstream's mock feeds
   back a register value or payload a real chip would not give in that situation, a
   comment says so and the frame carries what the emulated chip holds.
2. **In a field**: LLCP between two PN533s through ``clf.connect(llcp=...)``, and the
   failure cases (an empty field, two polling readers, a target host that answers late).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import nfc.clf
import nfc.clf.pn533
import pytest
from nfc.clf import LocalTarget, RemoteTarget

from nfcpay.transport.virtual.field import DEFAULT_SLACK
from nfcpay.transport.virtual.pn53x import ACK, HostFrames
from nfcpay.transport.virtual.pn533 import EEPROM, PN533, PRODUCT, VENDOR, open_pn533
from tests.support.pn53x import (
    CardA,
    CardF,
    LlcpPair,
    Wire,
    antennas,
    cmd,
    exchanges,
    frontend,
    rsp,
)

LINE_TEST = "00" + bytes(x & 0xFF for x in range(262)).hex()  # Diagnose test 0, 263 bytes


@contextmanager
def pn533(antenna: Any, *, slack: float = DEFAULT_SLACK) -> Iterator[tuple[Any, Wire]]:
    """``open_pn533`` with a recorder on the USB seam from the first frame on."""
    link = HostFrames(antenna, PN533, slack=slack, manufacturer=VENDOR, product=PRODUCT)
    wire = Wire(link.usb)
    device = nfc.clf.pn533.init(link.usb)
    device._path = "virtual"
    try:
        yield device, wire
    finally:
        device.close()


# -- 1. conformance -------------------------------------------------------------------------


def eeprom_reads() -> list[tuple[bytes, bytes]]:
    """The driver's EEPROM dump: four ReadRegister commands of 64 addresses from A000h."""
    pairs = []
    for base in range(0xA000, 0xA100, 64):
        addresses = "".join(f"{address:04x}" for address in range(base, base + 64))
        pairs.append((cmd("06" + addresses), rsp("07 00" + EEPROM[base - 0xA000 :][:64].hex())))
    return pairs


def test_open_and_close_exchange_upstreams_frames():
    # test_clf_pn533.py TestDevice.device fixture and test_init_with_read_eeprom: the
    # SCL3711 has the EEPROM (upstream's fixture answers the probe with an error, 07 FF,
    # the path of readers without one; test_init_with_read_eeprom is the path taken here).
    with antennas("reader") as (antenna,), pn533(antenna) as (device, wire):
        assert str(device) == "SCM Micro SCL3711-NFC&RW PN533v2.7 at virtual"
        init = wire.take()
        device.mute()
        mute = wire.take()
    assert init == [
        ("out", ACK),
        *exchanges(
            (cmd("00" + LINE_TEST), rsp("01" + LINE_TEST)),
            (cmd("02"), rsp("03 33020707")),
            (cmd("32 0102"), rsp("33")),
            (cmd("32 02000b0a"), rsp("33")),
            (cmd("32 0400"), rsp("33")),
            (cmd("32 05010001"), rsp("33")),
            (cmd("12 00"), rsp("13")),
            (cmd("06 a000"), rsp("07 00" + EEPROM[:1].hex())),
            *eeprom_reads(),
            (cmd("32 0a5af43f114d85616f266287"), rsp("33")),
            (cmd("32 0b6aff3f104185616f"), rsp("33")),
            (cmd("32 0cff0485"), rsp("33")),
            (cmd("32 0d85158a850ab28504da"), rsp("33")),
        ),
    ]
    assert mute == exchanges((cmd("32 0102"), rsp("33")))  # what close() sends too


def test_open_pn533_names_the_reader_as_nfcpy_sees_an_scl3711():
    with antennas("reader") as (antenna,):
        device = open_pn533(antenna)
        try:
            assert (device.vendor_name, device.product_name) == ("SCM Micro", "SCL3711-NFC&RW")
            assert device.get_max_send_data_size(None) == 263
            assert device.get_max_recv_data_size(None) == 262
        finally:
            device.close()


def test_sense_with_nobody_in_the_field():
    # base_clf_pn53x.py test_sense_tta_no_target_found, test_sense_ttf_more_rf_on_time,
    # test_sense_dep_no_target_found
    atr_req = bytes.fromhex("D400 30313233343536373839 00000000")
    with antennas("reader") as (antenna,), pn533(antenna) as (device, wire):
        wire.take()
        assert device.sense_tta(RemoteTarget("106A")) is None
        assert wire.take() == exchanges(
            (cmd("4A 0100"), rsp("4B 00")), (cmd("06 6339"), rsp("07 00 26"))
        )
        device.mute()  # the carrier off: sense_ttf gives cards 5 ms of field first
        wire.take()
        assert device.sense_ttf(RemoteTarget("212F")) is None
        assert wire.take() == exchanges(
            (cmd("06 6304"), rsp("07 00 80")),  # upstream's mock: 00 (TxControl reset is 80h)
            (cmd("32 0101"), rsp("33")),
            (cmd("4A 010100ffff0100"), rsp("4B 00")),
        )
        assert device.sense_dep(RemoteTarget("106A", atr_req=atr_req)) is None
        assert wire.take() == exchanges(
            (cmd("46 01000230313233343536373839"), rsp("47 01")),
            (cmd("08 63013b"), rsp("09 00")),
        )


def test_sense_tta_finds_a_dep_target_and_exchanges_through_in_communicate_thru():
    # base_clf_pn53x.py test_sense_tta_target_is_dep, test_send_cmd_recv_rsp_passive_dep_target
    # (the card answers upstream's "123" with "456")
    card = CardA(bytes.fromhex("4400"), bytes.fromhex("0416c6c2d73881"), sel_res=0x40)
    with antennas("reader", "card") as (antenna, card_antenna), pn533(antenna) as (device, wire):
        card_antenna.listen(card)
        wire.take()
        target = device.sense_tta(RemoteTarget("106A"))
        assert (target.sens_res, target.sel_res) == (bytes.fromhex("4400"), b"\x40")
        assert target.sdd_res == bytes.fromhex("0416C6C2D73881")
        assert wire.take() == exchanges((cmd("4A 0100"), rsp("4B 0101004440070416c6c2d73881")))
        assert device.send_cmd_recv_rsp(target, b"123", 10.0) == b"456"
        # upstream's mock registers read 00 00 00; the chip set 106A with CRC after the poll
        assert wire.take() == exchanges(
            (cmd("06 6302 6303 6305"), rsp("07 00 80 80 40")),
            (cmd("08 630280 630380 630540"), rsp("09 00")),
            (cmd("32 020a0b10"), rsp("33")),  # index 16: the longest timeout
            (cmd("42 313233"), rsp("43 00 343536")),
        )


def test_sense_tta_switches_the_crc_check_off_for_a_type_2_tag():
    # base_clf_pn53x.py test_sense_tta_target_is_tt2 (upstream's mock RxMode reads FFh)
    card = CardA(bytes.fromhex("4400"), bytes.fromhex("0416c6c2d73881"), sel_res=0x00)
    with antennas("reader", "card") as (antenna, card_antenna), pn533(antenna) as (device, wire):
        card_antenna.listen(card)
        wire.take()
        assert device.sense_tta(RemoteTarget("106A")).sel_res == b"\x00"
        assert wire.take() == exchanges(
            (cmd("4A 0100"), rsp("4B 0101004400070416c6c2d73881")),
            (cmd("06 6303"), rsp("07 00 80")),
            (cmd("08 630300"), rsp("09 00")),
        )


def test_sense_ttf_finds_a_felica_card():
    # base_clf_pn53x.py test_sense_ttf_target_found (carrier already on from a poll)
    sensf_res = bytes.fromhex("01 0102030405060708 F1F2F3F4F5F6F7F8 AABB")
    with antennas("reader", "card") as (antenna, card_antenna), pn533(antenna) as (device, wire):
        card_antenna.listen(CardF(sensf_res))
        device.chipset.rf_configuration(0x01, b"\x01")
        wire.take()
        target = device.sense_ttf(RemoteTarget("212F"))
        assert (target.brty, target.sensf_res) == ("212F", sensf_res)
        assert wire.take() == exchanges(
            (cmd("06 6304"), rsp("07 00 83")),  # upstream's mock: 03
            (cmd("4A 010100ffff0100"), rsp("4B 0101 14" + sensf_res.hex())),
        )


DEP_TARGET = {  # bytearrays, as nfcpy's DEP layer hands them (the driver edits atr_res)
    "sensf_res": bytearray.fromhex("01 01fe010203040506 0000000000000000 0000"),
    "sens_res": bytearray.fromhex("0101"),
    "sel_res": bytearray.fromhex("40"),
    "sdd_res": bytearray.fromhex("08010203"),
    "atr_res": bytearray.fromhex("D501 d0d1d2d3d4d5d6d7d8d9 0000000800"),
}
TG_INIT_AS_TARGET = cmd(
    "8c 02 010101020340 01fe010203040506 0000000000000000 0000 01fe0102030405060000 00 00"
)


def test_listen_dep_with_nobody_in_the_field_is_cancelled_by_the_host():
    # base_clf_pn53x.py test_listen_dep_not_activated / test_clf_pn533.py (frames)
    with antennas("target") as (antenna,), pn533(antenna) as (device, wire):
        wire.take()
        assert device.listen_dep(LocalTarget(**DEP_TARGET), 0.001) is None
        assert wire.take() == exchanges(
            (cmd("08 63017b6302b06303b0"), rsp("09 00")), (TG_INIT_AS_TARGET, None)
        )


def test_listen_dep_passive_106A_then_exchange():
    # base_clf_pn53x.py test_listen_dep_passive_106A, test_send_rsp_recv_cmd_with_dep_target;
    # the initiator is a second emulated PN533 sending upstream's ATR_REQ and DEP_REQ.
    atr_req = "D400 30313233343536373839 00000000"
    with (
        antennas("initiator", "target") as (ia, ta),
        pn533(ia) as (init, _),
        pn533(ta) as (
            device,
            wire,
        ),
    ):
        wire.take()
        answers: list[bytes] = []

        def initiator() -> None:
            target = None
            while target is None:
                target = init.sense_tta(RemoteTarget("106A"))
            answers.append(init.send_cmd_recv_rsp(target, bytes.fromhex("F011" + atr_req), 1.0))
            answers.append(init.send_cmd_recv_rsp(target, bytes.fromhex("F006D406000000"), 1.0))
            with pytest.raises(nfc.clf.TimeoutError):  # the target host does not answer
                init.send_cmd_recv_rsp(target, bytes.fromhex("F006D40600 3334"), 0.05)

        thread = threading.Thread(target=initiator)
        thread.start()
        try:
            target = device.listen_dep(LocalTarget(**DEP_TARGET), 1.0)
            listen = wire.take()
            command = device.send_rsp_recv_cmd(target, b"\xf012", 1.0)
            exchange = wire.take()
        finally:
            thread.join(5)
        assert (target.brty, target.atr_req.hex()) == ("106A", atr_req.replace(" ", "").lower())
        assert target.dep_req == bytes.fromhex("D406000000")
        assert listen == exchanges(
            (cmd("08 63017b6302b06303b0"), rsp("09 00")),
            (TG_INIT_AS_TARGET, rsp("8D 04 11" + atr_req)),
            (cmd("90 12" + DEP_TARGET["atr_res"].hex()), rsp("91 00")),
            (cmd("88"), rsp("89 00 06 D406000000")),
            (cmd("08 63013b"), rsp("09 00")),
        )
        # DetectSync is off now, so the chip hands over the F0 start byte that nfcpy's
        # DEP layer strips (upstream's mock leaves it out)
        assert exchange == exchanges(
            (cmd("90 f03132"), rsp("91 00")), (cmd("88"), rsp("89 00 f006d406003334"))
        )
        assert command == bytes.fromhex("F006D406003334")
        assert answers[0] == b"\xf0\x12" + DEP_TARGET["atr_res"]
        assert answers[1] == b"\xf012"


# -- 2. in a field --------------------------------------------------------------------------

MESSAGE = bytes(range(256)) * 2 + bytes(88)  # 600 bytes


def test_llcp_between_two_pn533s_carries_a_600_byte_message():
    pair = LlcpPair(MESSAGE, {"miu": 1024}, recv_miu=1024)  # nfcpay's MIU: one I-PDU
    with (
        antennas("initiator", "target") as (ia, ta),
        frontend(open_pn533(ia)) as initiator,
        frontend(open_pn533(ta)) as target,
    ):
        pair.run(target, initiator)
    assert sorted(pair.connected) == ["initiator", "target"]
    assert (pair.received, pair.answer) == (MESSAGE, b"ok")


def test_sense_in_an_empty_field_returns_none_within_the_timeout():
    with antennas("reader") as (antenna,), frontend(open_pn533(antenna)) as clf:
        started = time.monotonic()
        assert clf.sense(RemoteTarget("106A"), RemoteTarget("212F")) is None
        assert time.monotonic() - started < 5, "it ended after the timeouts, not never"


def test_two_polling_readers_garble_each_others_polls():
    card = CardA(bytes.fromhex("4400"), bytes.fromhex("0416c6c2d73881"), sel_res=0x00)
    with antennas("a", "b", "card") as (a, b, card_antenna):
        card_antenna.listen(card)
        with frontend(open_pn533(a)) as first, frontend(open_pn533(b)) as second:
            assert second.sense(RemoteTarget("106A")) is not None  # alone: found
            first.device.chipset.rf_configuration(0x01, b"\x01")  # a's carrier on
            card.heard.clear()
            assert second.device.sense_tta(RemoteTarget("106A")) is None
            assert card.heard == []  # the collision garbled every frame


@pytest.mark.parametrize("delay, answered", [(0.0, True), (0.06, False)])
def test_a_target_host_answering_after_the_deadline_times_slack_fails(delay, answered):
    # RWT 12.8 ms (the driver's index for 10 ms), slack 2: the initiator chip waits 25.6 ms
    # for the answer, well inside the 112.8 ms its host waits for the chip.
    results: list[Any] = []
    with (
        antennas("initiator", "target") as (ia, ta),
        pn533(ia, slack=2.0) as (init, _),
        pn533(ta, slack=2.0) as (device, _),
    ):

        def initiator() -> None:
            target = None
            while target is None:
                target = init.sense_tta(RemoteTarget("106A"))
            atr_req = bytes.fromhex("F011 D400 30313233343536373839 00000000")
            init.send_cmd_recv_rsp(target, atr_req, 1.0)
            try:
                results.append(init.send_cmd_recv_rsp(target, b"\xf0\x06\xd4\x06\x00ab", 0.01))
            except nfc.clf.TimeoutError as error:
                results.append(error)

        thread = threading.Thread(target=initiator)
        thread.start()
        try:
            target = device.listen_dep(LocalTarget(**DEP_TARGET), 1.0)
            assert target is not None
            time.sleep(delay)
            with contextlib.suppress(nfc.clf.TimeoutError):  # the initiator sends no more
                device.send_rsp_recv_cmd(target, b"\xf0\x06\xd5\x07\x00ok", 0.2)
        finally:
            thread.join(5)
    if answered:
        assert results == [b"\xf0\x06\xd5\x07\x00ok"]
    else:
        assert isinstance(results[0], nfc.clf.TimeoutError)
