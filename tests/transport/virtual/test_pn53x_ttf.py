"""Type 3 Tag emulation on the emulated PN53x's CIU (AutoColl, then Transceive).

nfcpy's ``pn53x.Device.listen_ttf`` cannot use TgInitAsTarget for NFC-F; it programs the
CIU itself through WriteRegister/ReadRegister (nfcpay/transport/virtual/pn53x.py models
what it needs: see the module docstring there).

1. **Conformance.** nfcpy's upstream driver tests (``tests/base_clf_pn53x.py`` in
   nfcpy/nfcpy, run for the PN533 by ``tests/test_clf_pn533.py``: the ``test_listen_ttf_*``
   and ``test_send_rsp_recv_cmd_tt3_*`` tests) hold the frames a real PN533 exchanges with
   the driver. They are replayed here frame by frame on the chip's USB seam, with a bare
   poller in the virtual field sending the air frames each upstream test assumes.
2. **Over nfcpy's unmodified drivers**: a virtual PN533 emulating nfcpay's Type 3 tag
   mailbox (``--carrier tt3``) read and written by a virtual RC-S380 and a virtual ACR122U
   through nfcpy's ordinary Type 3 Tag code; the ACR122U itself refuses to listen.
3. **The 64-byte CIU FIFO**: what a longer command or answer does, and nfcpay's mailbox
   with the SCL3711 profile's ``[tag_emulation] max_frame = 64`` staying within it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import nfc.clf
import nfc.tag
import pytest
from nfc.clf import LocalTarget

from nfcpay import errors
from nfcpay.transport.mailbox import BLOCK
from nfcpay.transport.profiles import profile_by_name
from nfcpay.transport.tt3 import blocks_per_command, tt3_tap
from nfcpay.transport.virtual.acr122u import open_acr122u
from nfcpay.transport.virtual.field import AirFrame
from nfcpay.transport.virtual.pn53x import ACK, BUFFER_OVFL, ERR_IRQ, ERROR, HostFrames
from nfcpay.transport.virtual.pn533 import PN533, PRODUCT, VENDOR, open_pn533
from nfcpay.transport.virtual.rcs380 import open_rcs380
from tests.support.pn53x import antennas, cmd, frontend, rsp
from tests.support.rcs380 import Poller, hexbytes, running

# -- 1. conformance -------------------------------------------------------------------------

# base_clf_pn53x.py TestDevice.test_listen_ttf_*: the target upstream listens as.
IDM, PMM, SYSTEM = "3132333435363738", "ffffffffffffffff", "12fc"
#: WriteRegister: Idle, flush the FIFO, 25 bytes into it (NFC-A 0*6, IDm PMm SC, 00), Configure.
CONFIGURE = (
    "08 633100633a806339 0063390063390063 3900633900633900 6339316339326339"
    "   3363393463393563 3936633937633938 6339ff6339ff6339 ff6339ff6339ff63"
    "   39ff6339ff6339ff 6339126339fc6339 00633101"
)
#: WriteRegister: Control … RxMode 212F … clear CommIRq/DivIRq, then the AutoColl command.
AUTO_COLL = "08 633c0063013f630b 8063029263039a63 0480630520630961 63347f63357f6331 0d"
STATUS = "06 6337633863346335"  # ReadRegister Status1 Status2 CommIRq DivIRq
IRQS = "06 63346335"  # ReadRegister CommIRq DivIRq
IDLE = "08 633100"
#: _tt3_send_rsp_recv_cmd's first WriteRegister: flush, clear CommIRq and DivIRq.
CLEAR = "08 633a80 63347f 63357f"


def ask(link: HostFrames, command: str) -> bytes:
    """One command on the chip's USB seam: its ACK, then the answer frame."""
    link.usb.write(cmd(command))
    assert link.usb.read(100) == ACK
    return bytes(link.usb.read(1000))


def wait_for(link: HostFrames, command: str, *, idle: str, fired: str) -> None:
    """Poll as the driver does until the interrupt bits read ``fired``; every earlier
    answer is ``idle`` (the frame had not come yet)."""
    for _ in range(500):
        answer = ask(link, command)
        if answer == rsp("07 00" + fired):
            return
        assert answer == rsp("07 00" + idle)
        time.sleep(0.002)
    raise AssertionError(f"{command}: never {fired}")


@pytest.fixture
def chip() -> Iterator[tuple[HostFrames, Poller]]:
    """A bare PN533 (no driver: the test speaks upstream's frames) and a poller next to it."""
    with antennas("pn533", "poller") as (antenna, poller_antenna):
        link = HostFrames(antenna, PN533, slack=4.0, manufacturer=VENDOR, product=PRODUCT)
        try:
            yield link, Poller(poller_antenna)
        finally:
            link.usb.close()


def listen(link: HostFrames) -> None:
    """listen_ttf's two WriteRegister commands, as upstream has them."""
    assert ask(link, CONFIGURE) == rsp("09 00")
    assert ask(link, AUTO_COLL) == rsp("09 00")


def test_listen_ttf_not_activated(chip):
    # base_clf_pn53x.py test_listen_ttf_not_activated: nobody in the field, the driver
    # polls once and gives up with the Idle command, which stops AutoColl.
    link, poller = chip
    listen(link)
    assert ask(link, STATUS) == rsp("07 00 00000000")
    assert poller.send("212F", "0600ffff0000", 0.01) is not None  # AutoColl answers polls
    assert ask(link, IDLE) == rsp("09 00")
    assert poller.send("212F", "0600ffff0000", 0.01) is None  # … until the host stops it


def test_listen_ttf_activated_then_tt3_exchanges(chip):
    # base_clf_pn53x.py test_listen_ttf_get_activated, then test_send_rsp_recv_cmd_with_
    # tt3_target (the host answers upstream's "12", the poller's next frame is upstream's
    # 06 D406 00 3334), test_send_rsp_recv_cmd_tt3_timeout_error (nothing comes),
    # test_send_rsp_recv_cmd_tt3_not_send_data (no answer, the next frame comes anyway) and
    # test_send_rsp_recv_cmd_tt3_broken_link (the poller's carrier goes off).
    link, poller = chip
    listen(link)
    # The chip answers SENSF_REQ by itself from the Configure parameters (no host frame
    # shows it, so upstream has none): request code 0, no system code in the answer.
    assert poller.send("212F", "06 00 ffff 00 00") == hexbytes("12 01" + IDM + PMM)
    with running(lambda: poller.send("212F", "0a 00" + IDM)) as first:
        wait_for(link, STATUS, idle="00000000", fired="00003000")  # RxIRq, IdleIRq
        assert ask(link, "08 633430") == rsp("09 00")
        assert ask(link, "06 633a") == rsp("07 00 0a")
        assert ask(link, "06" + 10 * " 6339") == rsp("07 00 0a00" + IDM)
        assert ask(link, CLEAR + " 633931 633932 633d80") == rsp("09 00")  # StartSend "12"
    assert first.result() == b"12"
    for flush_first in (False, True):  # with_tt3_target, then timeout_error, not_send_data
        if flush_first:
            assert ask(link, CLEAR) == rsp("09 00")  # the host does not answer the last one
            assert ask(link, IRQS) == rsp("07 00 0000")  # nothing came yet
        with running(lambda: poller.send("212F", "06 d406 00 3334", 0.05)) as unanswered:
            wait_for(link, IRQS, idle="0000", fired="2000")  # RxIRq (Transceive now)
            assert ask(link, "08 633420") == rsp("09 00")
            assert ask(link, "06 633a") == rsp("07 00 06")
            assert ask(link, "06" + 6 * " 6339") == rsp("07 00 06d406003334")
        assert unanswered.result() is None  # the host never answered: the poller timed out
    assert ask(link, CLEAR) == rsp("09 00")
    poller.leave()
    assert ask(link, IRQS) == rsp("07 00 0001")  # broken_link: RfOffIRq


def test_listen_ttf_frame_not_for_this_target_restarts_autocoll(chip):
    # base_clf_pn53x.py test_listen_ttf_frame_length_error[0a000000000000000000]: the CIU
    # does not compare the IDm, the driver does and restarts AutoColl, then times out.
    # Its other case, 00003132333435363738 (a length byte that disagrees), and
    # test_send_rsp_recv_cmd_tt3_frame_error (03 D406 00 3334) cannot come off the air
    # whole: the CIU takes as many bytes as the length byte says. What does reach the FIFO
    # with a wrong length byte is a frame over 64 bytes (section 3).
    link, poller = chip
    listen(link)
    assert poller.send("212F", "06 00 12fc 01 00") == hexbytes("14 01" + IDM + PMM + SYSTEM)
    with running(lambda: poller.send("212F", "0a 00 0000000000000000", 0.05)) as frame:
        wait_for(link, STATUS, idle="00000000", fired="00003000")
        assert ask(link, "08 633430") == rsp("09 00")
        assert ask(link, "06 633a") == rsp("07 00 0a")
        assert ask(link, "06" + 10 * " 6339") == rsp("07 00 0a000000000000000000")
        assert ask(link, "08 63310d") == rsp("09 00")  # AutoColl again
    assert frame.result() is None
    # A restarted AutoColl waits for a new SENSF_REQ: a frame before it is not taken.
    assert poller.send("212F", "0a 06" + IDM, 0.01) is None
    assert ask(link, STATUS) == rsp("07 00 00000000")
    assert ask(link, IDLE) == rsp("09 00")


@pytest.mark.parametrize(
    "brty, sensf_req, sensf_res",
    [
        ("212F", "06 00 ffff 00 00", "12 01" + IDM + PMM),
        ("212F", "06 00 12ff 01 00", "14 01" + IDM + PMM + SYSTEM),  # FF: any byte
        ("212F", "06 00 ff fc 01 0f", "14 01" + IDM + PMM + SYSTEM),  # TSN: 16 slots
        ("212F", "06 00 12fc 02 00", "12 01" + IDM + PMM),  # no comm. performance data
        ("212F", "06 00 88b4 00 00", None),  # another system code
        ("424F", "06 00 ffff 00 00", None),  # AutoColl listens at RxMode's rate only
        ("106A", "26", None),  # … and the NFC-A parameters stay unused at 212F
    ],
)
def test_autocoll_answers_sensf_req_as_a_felica_target(chip, brty, sensf_req, sensf_res):
    # The chip's own answers: upstream has no frames for them (they never reach the host).
    link, poller = chip
    listen(link)
    expected = hexbytes(sensf_res) if sensf_res else None
    assert poller.send(brty, sensf_req, 0.01) == expected


# -- 2. over nfcpy's unmodified drivers -----------------------------------------------------

SENSF_RES = hexbytes("01 02fe010203040506 03ff000000bfbf00 12fc")
POLLERS: dict[str, Callable[..., Any]] = {"rcs380": open_rcs380, "acr122u": open_acr122u}
TO_READER = bytes(range(200))  # 13 blocks: read in several commands
TO_TAG = b"paid, thank you " * 10  # 10 blocks: written in several commands


def test_the_acr122u_refuses_to_listen_as_a_type3_tag():
    # nfcpy's acr122 driver refuses before it sends a frame (the PN532 inside could).
    with (
        antennas("acr122u") as (antenna,),
        frontend(open_acr122u(antenna)) as clf,
        pytest.raises(nfc.clf.UnsupportedTargetError, match="listen as Type F Target"),
    ):
        clf.listen(LocalTarget("212F", sensf_res=SENSF_RES), 0.1)
    assert not profile_by_name("acr122u").can_emulate_tt3


def test_listen_ttf_returns_none_when_nobody_comes():
    with (
        antennas("pn533", "poller") as (antenna, poller_antenna),
        frontend(open_pn533(antenna)) as clf,
    ):
        assert clf.listen(LocalTarget("212F", sensf_res=SENSF_RES), 0.05) is None
        # the driver's Idle command stopped AutoColl: nobody answers a poll now
        assert Poller(poller_antenna).send("212F", "0600ffff0000", 0.01) is None


@contextmanager
def emulated_tag(
    poller: str, *, air_time: bool = False
) -> Iterator[tuple[nfc.ContactlessFrontend, nfc.ContactlessFrontend, list[AirFrame]]]:
    """A PN533 to emulate the tag and a ``poller`` chip to read it, in one field whose
    Type F frames (commands and answers) are recorded."""
    frames: list[AirFrame] = []
    with antennas("pn533", poller, air_time=air_time) as (tag_antenna, reader_antenna):
        tag_antenna.field.observers.append(
            lambda kind, name, frame: frames.append(frame) if frame.brty == "212F" else None
        )
        with (
            frontend(open_pn533(tag_antenna)) as tag_clf,
            frontend(POLLERS[poller](reader_antenna)) as reader_clf,
        ):
            yield tag_clf, reader_clf, frames


def mailbox_conversation(
    tag_clf: nfc.ContactlessFrontend, reader_clf: nfc.ContactlessFrontend, max_frame: int
) -> tuple[bytes, bytes]:
    """One tap over nfcpay's tt3 mailbox: the tag side offers TO_READER, the reader reads
    it and writes TO_TAG. (What the reader read, what the tag side got.)"""

    def tag_side() -> bytes:
        deadline = time.monotonic() + 10
        with tt3_tap(tag_clf, role="listen", deadline=deadline, max_frame=max_frame) as tag:
            tag.send(TO_READER, timeout=5)
            return tag.receive(5)

    with running(tag_side) as got:
        deadline = time.monotonic() + 10
        with tt3_tap(reader_clf, role="poll", deadline=deadline, max_frame=max_frame) as reader:
            read = reader.receive(5)
            reader.send(TO_TAG)
    taken = got.result()
    assert isinstance(taken, bytes)
    return read, taken


@pytest.mark.parametrize("poller", sorted(POLLERS))
def test_a_pn533_emulating_the_tt3_mailbox_is_read_and_written(poller):
    max_frame = profile_by_name("pn533").emulation_max_frame
    with emulated_tag(poller, air_time=True) as (tag_clf, reader_clf, _):
        assert mailbox_conversation(tag_clf, reader_clf, max_frame) == (TO_READER, TO_TAG)


@contextmanager
def pn533_and_poller() -> Iterator[tuple[nfc.ContactlessFrontend, Poller]]:
    """nfcpy's PN533 driver on an emulated SCL3711, and a bare poller in its field."""
    with (
        antennas("pn533", "poller") as (antenna, poller_antenna),
        frontend(open_pn533(antenna)) as clf,
    ):
        yield clf, Poller(poller_antenna)


def read_command(length: int) -> bytes:
    """A Read Without Encryption command of ``length`` bytes for the emulated tag's IDm
    (its block list padded out: only its length matters to the chip)."""
    head = bytes([length, 0x06]) + SENSF_RES[1:9] + bytes.fromhex("010b00")
    return (head + bytes([(length - 14) // 2]) + bytes.fromhex("8000") * 64)[:length]


@contextmanager
def activated(
    clf: nfc.ContactlessFrontend, poller: Poller
) -> Iterator[tuple[LocalTarget, Future[object]]]:
    """listen_ttf on the PN533, activated by the poller's SENSF_REQ and a first command
    (a 16-byte read), whose answer the poller waits for while the block runs."""
    with running(lambda: clf.listen(LocalTarget("212F", sensf_res=SENSF_RES), 2.0)) as listened:
        poller.until_answered("212F", "0600ffff0000")
        with running(lambda: poller.send("212F", read_command(16), 0.5)) as first:
            target = listened.result(timeout=5)
            assert isinstance(target, LocalTarget)
            assert target.tt3_cmd == read_command(16)[1:]
            yield target, first


def test_no_command_times_out_and_the_pollers_carrier_going_off_breaks_the_link():
    # _tt3_send_rsp_recv_cmd: TimeoutError while the carrier stays on and nothing comes,
    # BrokenLinkError once RfOffIRq is set. The carrier goes off while the driver polls the
    # interrupt registers (an edge before its next "clear the IRQs" would be lost, as on the
    # chip), so the test waits for the driver's first poll.
    with pn533_and_poller() as (clf, poller), activated(clf, poller) as (target, first):
        emulation = nfc.tag.emulate(clf, target)
        with pytest.raises(nfc.clf.TimeoutError):
            emulation.send_response(None, 0.05)  # the first command stays unanswered
        polling = threading.Event()
        clf.device.chipset.transport.observers.append(
            lambda direction, frame: polling.set() if frame == cmd(IRQS) else None
        )
        broken = pytest.raises(nfc.clf.BrokenLinkError, match="external field switched off")
        with broken, running(lambda: emulation.send_response(None, 5.0)):
            assert polling.wait(5)
            poller.leave()
    assert first.result() is None


# -- 3. the 64-byte CIU FIFO ----------------------------------------------------------------


@pytest.mark.parametrize("length", [64, 65, 100])
def test_a_command_over_64_bytes_overflows_the_fifo_and_is_lost(length):
    # The CIU stores the first 64 bytes, sets BufferOvfl (ErrIRq) and RxIRq at the end of
    # the frame; the driver reads a frame whose length byte says more and raises.
    sent = read_command(length)
    received: list[bytes] = []
    with pn533_and_poller() as (clf, poller), activated(clf, poller) as (_, first):
        failing = pytest.raises(nfc.clf.TransmissionError, match="frame length byte error")
        with (
            failing if length > 64 else contextlib.nullcontext(),
            running(lambda: received.append(clf.exchange(b"\x02\x07", 1.0))),
        ):
            assert first.result(timeout=5) == b"\x02\x07"  # the answer to the first
            assert poller.send("212F", sent, 0.05) is None  # nobody answers this one
        error = clf.device.chipset.read_register(ERROR)
        comm_irq = clf.device.chipset.read_register("CIU_CommIRq")
    assert received == ([sent] if length <= 64 else [])
    assert (bool(error & BUFFER_OVFL), bool(comm_irq & ERR_IRQ)) == (length > 64,) * 2


@pytest.mark.parametrize("length", [64, 65, 77])
def test_an_answer_over_64_bytes_goes_out_cut_to_the_fifo(length):
    # What the host writes past 64 bytes is lost (BufferOvfl); StartSend sends the FIFO:
    # the reader gets 64 bytes whose length byte says more, which nfcpy's Type 3 Tag code
    # rejects ("invalid response length").
    answer = bytes([length, 0x07]) + SENSF_RES[1:9] + bytes(range(length - 10))
    with pn533_and_poller() as (clf, poller), activated(clf, poller) as (_, first):
        with pytest.raises(nfc.clf.TimeoutError):
            clf.exchange(answer, 0.05)
        error = clf.device.chipset.read_register(ERROR)
    assert first.result() == answer[:64]
    assert bool(error & BUFFER_OVFL) == (length > 64)


def test_the_mailbox_with_the_scl3711_profile_stays_within_the_fifo():
    max_frame = profile_by_name("pn533").emulation_max_frame
    assert max_frame == 64
    assert blocks_per_command(max_frame) == (3, 2)  # read 3, write 2 blocks per command
    with emulated_tag("rcs380") as (tag_clf, reader_clf, frames):
        assert mailbox_conversation(tag_clf, reader_clf, max_frame) == (TO_READER, TO_TAG)
    assert max(len(frame.data) for frame in frames) <= 64
    reads = [f.data for f in frames if f.data[1:2] == b"\x07"]  # Read answers
    writes = [f.data for f in frames if f.data[1:2] == b"\x08"]  # Write commands
    assert max(len(data) for data in reads) == 13 + 3 * BLOCK  # 61 bytes
    assert max(len(data) for data in writes) == 14 + 2 * (2 + BLOCK)  # 50 bytes


def test_a_mailbox_asking_for_more_than_the_fifo_holds_fails():
    # max_frame 77: 4 blocks per read, a 77-byte answer that leaves the PN533 cut to 64
    # bytes (the reader's Type 3 Tag code rejects it and leaves; the tag side learns that
    # the reader left before reading the message). A mailbox with still larger frames
    # fails before the chip: nfcpy's driver puts 3 bytes per FIFO byte in one WriteRegister
    # and asserts for an answer over 83 bytes (the PN533's 265-byte host frame).
    assert blocks_per_command(77) == (4, 3)
    with emulated_tag("rcs380") as (tag_clf, reader_clf, frames):

        def tag_side() -> None:
            deadline = time.monotonic() + 10
            with tt3_tap(tag_clf, role="listen", deadline=deadline, max_frame=77) as tag:
                tag.send(TO_READER, timeout=5)

        with pytest.raises(errors.LinkLost, match="reader"), running(tag_side):
            deadline = time.monotonic() + 10
            with (
                tt3_tap(reader_clf, role="poll", deadline=deadline, max_frame=77) as reader,
                pytest.raises(errors.LinkLost, match="tag command failed"),
            ):
                reader.receive(5)
    answers = [frame.data for frame in frames if frame.data[1:2] == b"\x07"]
    assert answers[-1][0] == 13 + 4 * BLOCK and len(answers[-1]) == 64
