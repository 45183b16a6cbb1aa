"""An NFC-DEP answer that comes after the initiator's response waiting time does not end the
tap over the loopback reader (:meth:`nfcpay.transport.nfcpy.LoopbackDevice.send_cmd_recv_rsp`).

The waiting side (the NFC-DEP target) runs under late_peer.py and sends one answer 120 ms
late, as a descheduled process on a busy machine does: the tapping side times out after 77 ms
and sends an attention request (ATN). On the air the late answer is lost; over UDP it waited
in the socket, and nfcpy read it as the ATN's answer and ended the link (seen in a CI-like
run: "expected NFC-DEP Attention response", the grant hand-off lost).
"""

from __future__ import annotations

import pytest

from nfcpay.transport.peer import payload
from tests.support.loopback import loop, steps

pytestmark = pytest.mark.nfc_sim


@pytest.mark.parametrize("size", [40, 700])
def test_a_late_answer_costs_time_not_the_tap(spawn, port, size):
    waiter = spawn(
        "--device",
        loop(port),
        "--offer",
        *steps(f"send=ndef:{size}", "recv", "send=text:done"),
        late="answer",
    )
    tapper = spawn("--device", loop(port), *steps("recv", "echo", "recv"))
    [waited] = waiter.taps(1)
    [tapped] = tapper.taps(1)
    assert waited["ok"] and tapped["ok"], (waited, tapped, tapper.stderr())
    assert tapped["received"] == [payload(f"ndef:{size}").hex(), payload("text:done").hex()]
    assert waited["received"] == [payload(f"ndef:{size}").hex()]
