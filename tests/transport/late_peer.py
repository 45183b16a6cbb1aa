"""The scripted peer, with its application thread descheduled at the worst moments.

On a busy 2-core machine the thread that called ``connect()``/``accept()`` can wake up
milliseconds after nfcpy's LLC thread has moved on; this makes that happen every time,
so the connection set-up races nfcpy 1.0.4 has (see ``nfcpay.transport.llc``) show up
deterministically. Only thread timing changes: every PDU still goes through the real
nfcpy code and the loopback reader.

    python late_peer.py connect <peer args>   # connect() wakes up late on its CC
    python late_peer.py accept <peer args>    # accept() inserts the connection late
    python late_peer.py answer <peer args>    # one NFC-DEP answer comes after the RWT

Delay only the side that receives the first message: delaying the sender as well would
just postpone its first send by the same amount and hide the race.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import nfc.llcp.llc
import nfc.llcp.tco

LATE = 0.03


def late_connect() -> None:
    """Wake the thread blocked in connect() late once the CC has been dispatched."""
    dlc_init = nfc.llcp.tco.DataLinkConnection.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        dlc_init(self, *args, **kwargs)
        condition = threading.Condition(self.lock)
        restore = condition._acquire_restore  # type: ignore[attr-defined]

        def wake_late(state: Any) -> Any:
            if self.state.CONNECT:
                time.sleep(LATE)
            return restore(state)

        condition._acquire_restore = wake_late  # type: ignore[attr-defined]
        self.recv_ready = condition

    nfc.llcp.tco.DataLinkConnection.__init__ = init


def late_accept() -> None:
    """Insert an accepted connection into its SAP late (after the CC could have left)."""
    insert = nfc.llcp.llc.ServiceAccessPoint.insert_socket

    def insert_late(self: Any, socket: Any) -> Any:
        time.sleep(LATE)
        return insert(self, socket)

    nfc.llcp.llc.ServiceAccessPoint.insert_socket = insert_late


#: Later than the initiator's response waiting time (77 ms), within its two attention
#: requests' time: the answer a descheduled target sends after the initiator gave up on it.
LATE_ANSWER = 0.12
#: Which of the target's answers is late: the second it sends (both sizes fail without the fix).
LATE_FRAME = 2


def late_answer() -> None:
    """As an NFC-DEP target over the loopback reader, send the LATE_FRAME-th answer late."""
    import nfc.clf.udp

    send = nfc.clf.udp.Device.send_rsp_recv_cmd
    answers = 0

    def send_late(self: Any, target: Any, data: Any, timeout: Any) -> Any:
        nonlocal answers
        if data is not None:
            answers += 1
            if answers == LATE_FRAME:
                time.sleep(LATE_ANSWER)
        return send(self, target, data, timeout)

    nfc.clf.udp.Device.send_rsp_recv_cmd = send_late


if __name__ == "__main__":
    modes = {"connect": late_connect, "accept": late_accept, "answer": late_answer}
    modes[sys.argv.pop(1)]()
    from nfcpay.transport.peer import main

    sys.exit(main())
