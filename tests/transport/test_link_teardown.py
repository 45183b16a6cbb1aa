"""How an LLCP tap starts and ends on the loopback reader (nfcpay/transport/llc.py, nfcpy.py).

The end of a tap is checked through nfcpy's NFC-DEP packet counters, not the clock: when
the target answers every request at once, the initiator never has to send ATN (which it
does only after waiting one RWT for an answer), and the link ends with DSL_REQ/DSL_RES.
"""

from __future__ import annotations

import socket
import threading

import nfc.llcp
import nfc.llcp.pdu
import pytest

from nfcpay.transport.llc import DepTarget, Llc
from tests.support.loopback import open_reader_here, steps

pytestmark = pytest.mark.nfc_sim


def dep_counters(channel: object) -> tuple[dict[str, int], dict[str, int]]:
    """(sent, received) NFC-DEP packet counts of the tap's link (nfcpy keeps no public view)."""
    pcnt = channel._link.llc.mac.pcnt  # type: ignore[attr-defined]
    return dict(pcnt.sent), dict(pcnt.rcvd)


def test_tapping_side_ends_the_link_without_waiting_for_the_target(spawn, reader):
    waiter = spawn("--device", reader("rcs380"), "--offer", "--carrier", "llcp", *steps("recv"))
    with (
        open_reader_here(reader("acr122u")) as tapping,
        tapping.tap("test", offer=False, carrier="llcp", timeout=15) as channel,
    ):
        pass  # leave at once: we send the DISC while the waiting side still listens
    sent, received = dep_counters(channel)
    assert sent.get("DEP ATN", 0) == 0, (sent, received)  # our DISC was answered in time
    assert (sent.get("DSL"), received.get("DSL")) == (1, 1), (sent, received)
    [waited] = waiter.taps(1)
    assert not waited["ok"] and waited["error"] == "link_lost", waited


def test_waiting_side_ends_the_link_by_answering_the_held_request(spawn, reader):
    tapper = spawn("--device", reader("acr122u"), "--carrier", "llcp", *steps("recv", "recv"))
    with (
        open_reader_here(reader("rcs380")) as waiting,
        waiting.tap("test", offer=True, carrier="llcp", timeout=15) as channel,
    ):
        channel.send(b"\x01\x02")
    sent, received = dep_counters(channel)
    assert isinstance(channel._link.llc.mac, DepTarget)  # type: ignore[attr-defined]
    assert received.get("DEP ATN", 0) == 0, (sent, received)  # the initiator never had to ask
    assert (received.get("DSL"), sent.get("DSL")) == (1, 1), (sent, received)
    [tapped] = tapper.taps(1)
    assert not tapped["ok"] and tapped["error"] == "link_lost", tapped


def test_listener_ignores_a_stale_rf_off_and_answers_the_poll_behind_it(port):
    """The udp poller sends "RF off" for its last link right before its next SENS_REQ."""
    with open_reader_here(f"loopback:{port}") as reader:
        device = reader.clf.device
        listening = threading.Thread(target=DepTarget(reader.clf).activate, args=(1.0,))
        listening.start()
        try:
            assert device.listening_port_bound.wait(5)  # the listen call holds the port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as poller:
                poller.settimeout(5)
                poller.sendto(b"RFOFF", ("127.0.0.1", port))
                poller.sendto(b"106A 26", ("127.0.0.1", port))  # SENS_REQ
                answer, _ = poller.recvfrom(1024)
        finally:
            listening.join(5)
    assert answer == b"106A 0101"  # SENS_RES of an NFC-DEP target


def test_every_queued_pdu_wakes_the_link_controller():
    llc = Llc(miu=1024, lto=500, sec=False)
    dlc = llc.socket(nfc.llcp.DATA_LINK_CONNECTION)
    llc.pending.clear()
    dlc.send_queue.append(nfc.llcp.pdu.Disconnect(1, 32))
    assert llc.pending.is_set()
    dlc.send_queue.popleft()
    llc.pending.clear()
    dlc.send_queue.appendleft(nfc.llcp.pdu.Disconnect(1, 32))  # the LLC putting one back
    assert not llc.pending.is_set()
