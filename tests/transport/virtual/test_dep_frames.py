"""NFC-DEP frames that fit the reader's driver (nfcpay/transport/llc.py, DepInitiator).

nfcpy 1.0.4 announces and fills NFC-DEP frames of LR 254. Its ACR122U driver packs each
PN532 command's length into one byte, so such a frame raises ValueError in the driver —
a crash no udp loopback can show. The first test reproduces it over the emulated ACR122U
with nfcpy's own initiator; the others show nfcpay's way round it: frames sized by the
reader's profile, the message chained over more of them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import nfc
import nfc.dep
import pytest

from nfcpay.transport.device import DeviceSpec
from nfcpay.transport.llc import DEP_FRAME_LENGTHS, DepInitiator, dep_length_index
from nfcpay.transport.profiles import profile_by_name
from nfcpay.transport.reader import Reader
from nfcpay.transport.virtual.acr122u import open_acr122u
from nfcpay.transport.virtual.field import Field
from nfcpay.transport.virtual.rcs380 import open_rcs380

MESSAGE = bytes(range(256)) * 2 + bytes(88)  # 600 bytes: means with eight grants


@pytest.mark.parametrize(
    ("max_frame", "lr"), [(None, 254), (290, 254), (263, 254), (256, 254), (252, 192), (130, 128)]
)
def test_the_longest_frame_that_fits_the_driver(max_frame, lr):
    assert DEP_FRAME_LENGTHS[dep_length_index(max_frame)] == lr


def test_a_reader_too_small_for_any_frame_is_refused():
    with pytest.raises(ValueError, match="cannot run NFC-DEP"):
        dep_length_index(60)


def frontend(device: nfc.clf.device.Device) -> nfc.ContactlessFrontend:
    clf = nfc.ContactlessFrontend()
    clf.device = device
    return clf


@pytest.fixture
def counter() -> Iterator[tuple[nfc.ContactlessFrontend, nfc.ContactlessFrontend]]:
    """An ACR122U (poll only) and an RC-S380 in one in-process field."""
    field = Field("counter")
    acr122u = frontend(open_acr122u(field.attach("acr122u")))
    rcs380 = frontend(open_rcs380(field.attach("rcs380")))
    yield acr122u, rcs380
    for clf in (acr122u, rcs380):
        clf.close()
    for antenna in field.antennas:
        antenna.close()


def serve_dep(clf: nfc.ContactlessFrontend, answers: list[bytes]) -> threading.Thread:
    """An NFC-DEP target (nfcpy's, LR 254) that echoes one request."""

    def run() -> None:
        target = nfc.dep.Target(clf)
        if target.activate(timeout=5.0) is None:
            return
        request = target.exchange(None, 5.0)
        if request is not None:
            answers.append(bytes(request))
            target.exchange(request, 5.0)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def poll_for_target(clf: nfc.ContactlessFrontend) -> nfc.clf.RemoteTarget:
    for _ in range(50):
        target = clf.sense(nfc.clf.RemoteTarget("106A"), iterations=1)
        if target is not None:
            return target
    raise AssertionError("the RC-S380 never answered a poll")


def test_nfcpys_longest_frame_crashes_the_acr122u_driver(counter):
    acr122u, rcs380 = counter
    heard: list[bytes] = []
    listening = serve_dep(rcs380, heard)
    initiator = nfc.dep.Initiator(acr122u)
    assert initiator.activate(poll_for_target(acr122u), brs=0) is not None
    try:
        with pytest.raises(ValueError, match="byte must be in range"):
            initiator.exchange(bytearray(MESSAGE), 1.0)
    finally:
        acr122u.device.mute()  # the target's wait ends with the field
        listening.join(10)
    assert heard == []


@pytest.mark.parametrize("brs", [0, 2], ids=["106A", "424F"])
def test_frames_sized_by_the_profile_carry_600_bytes(counter, brs):
    acr122u, rcs380 = counter
    heard: list[bytes] = []
    listening = serve_dep(rcs380, heard)
    lri = dep_length_index(profile_by_name("acr122u").max_send)
    initiator = DepInitiator(acr122u, length_index=lri)
    try:
        assert initiator.activate(poll_for_target(acr122u), brs=brs) is not None
        assert initiator.miu == 192 - 3  # the RC-S380 could take 254: we send what we can
        assert bytes(initiator.exchange(bytearray(MESSAGE), 1.0)) == MESSAGE
        initiator.deactivate()
    finally:
        listening.join(10)
    assert heard == [MESSAGE]


def test_a_600_byte_message_crosses_an_acr122u_both_ways_over_llcp(counter):
    """The production path: Reader.tap with the ACR122U profile, LLCP over DepInitiator."""
    acr122u, rcs380 = counter
    spec = DeviceSpec("virtual", "virtual:acr122u@counter", chip="acr122u", field="counter")
    tapper = Reader(acr122u, spec, profile_by_name("acr122u"), "poll")
    waiter = Reader(rcs380, spec, profile_by_name("rcs380"), "listen")
    got: list[bytes] = []

    def wait() -> None:
        with waiter.tap("test", offer=True, timeout=10) as channel:
            got.append(channel.receive(timeout=5))
            channel.send(MESSAGE[::-1])

    waiting = threading.Thread(target=wait)
    waiting.start()
    try:
        with tapper.tap("test", offer=False, timeout=10) as channel:
            channel.send(MESSAGE)
            assert channel.receive(timeout=5) == MESSAGE[::-1]
    finally:
        waiting.join(15)
    assert got == [MESSAGE]
