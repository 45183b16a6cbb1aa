"""No idle nap while a PDU waits (nfcpay/transport/llc.py, Llc.collect), over emulated chips.

nfcpy 1.0.4's LLC sleeps before each collection: 1 ms, and 50 ms whenever it has nothing to
send once the link has carried 10 SYMMs, so a PDU queued during that sleep waited it out.
nfcpay's Llc waits on an event that queuing a PDU sets, capped at ``LLCP_IDLE_PACE``. This
runs an LLCP tap with an idle stretch between a virtual ACR122U and RC-S380 behind nfcpy's
own drivers, and checks that nfcpy asked for its idle naps and never slept one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import nfc
import nfc.llcp.llc
import pytest

from nfcpay.transport import timing
from nfcpay.transport.device import DeviceSpec
from nfcpay.transport.llc import Llc
from nfcpay.transport.profiles import profile_by_name
from nfcpay.transport.reader import Reader
from nfcpay.transport.virtual.acr122u import open_acr122u
from nfcpay.transport.virtual.field import Field
from nfcpay.transport.virtual.rcs380 import open_rcs380

#: Long enough for well over 10 SYMM exchanges, after which nfcpy naps 50 ms when idle.
IDLE = 0.4


class RecordedTime:
    """``time`` as nfcpy's llc module sees it, with every sleep written down."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        time.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def readers() -> Iterator[tuple[Reader, Reader]]:
    """A poll-only ACR122U (the tapping side) and a listening RC-S380, in one field."""
    field = Field("idle")
    spec = DeviceSpec("virtual", "virtual:acr122u@idle", chip="acr122u", field="idle")
    fronts = []
    for opener, name in ((open_acr122u, "acr122u"), (open_rcs380, "rcs380")):
        clf = nfc.ContactlessFrontend()
        clf.device = opener(field.attach(name))
        fronts.append(clf)
    yield (
        Reader(fronts[0], spec, profile_by_name("acr122u"), "poll"),
        Reader(fronts[1], spec, profile_by_name("rcs380"), "listen"),
    )
    for clf in fronts:
        clf.close()
    for antenna in field.antennas:
        antenna.close()


def test_an_idle_link_is_asked_to_nap_and_never_sleeps(readers, monkeypatch):
    tapper, waiter = readers
    recorded = RecordedTime()
    monkeypatch.setattr(nfc.llcp.llc, "time", recorded)
    asked: list[float | None] = []
    collect = Llc.collect

    def recording_collect(self: Llc, delay: float | None = None) -> Any:
        asked.append(delay)
        return collect(self, delay)

    monkeypatch.setattr(Llc, "collect", recording_collect)
    got: list[bytes] = []

    def wait() -> None:
        with waiter.tap("idle", offer=True, timeout=10) as channel:
            got.append(channel.receive(timeout=5))
            time.sleep(IDLE)  # the answer is "ready" only after an idle stretch
            channel.send(b"answer after an idle stretch")

    waiting = threading.Thread(target=wait)
    waiting.start()
    try:
        with tapper.tap("idle", offer=False, timeout=10) as channel:
            channel.send(b"question")
            assert channel.receive(timeout=5) == b"answer after an idle stretch"
    finally:
        waiting.join(15)
    assert got == [b"question"]
    assert 0.05 in asked  # nfcpy's idle nap was asked for (the link carried > 10 SYMMs)
    assert recorded.slept == []  # and never taken: Llc waits on its event instead
    assert timing.LLCP_IDLE_PACE < 0.05
