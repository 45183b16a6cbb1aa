"""nfcpy's LogicalLinkController with its data-link connection set-up races closed.

nfcpy 1.0.4 runs the LLC (PDU dispatch and collection) on one thread and the socket calls
on another, and in two places it changes connection state on the *application* thread,
after the LLC thread has already moved on. A PDU that arrives in that window matches no
branch of ``DataLinkConnection.enqueue`` and is dropped silently: no FRMR, no DM, and LLCP
has no retransmission, so the sender waits for an acknowledgement that never comes.

* Connecting side: ``connect()`` sets ESTABLISHED only when the application thread wakes up
  and pops the CC from the receive queue. The peer may send its first I-PDU as soon as its
  CC is out; if that I-PDU is dispatched first (one LLC turn, ~3 ms on loopback, easily
  missed on a busy 2-core machine) it arrives in CONNECT state and vanishes. This is the
  "waiting side speaks first never arrives" bug. :class:`Dlc` makes the CC
  establish the connection on the LLC thread, where the LLCP state machine belongs.
* Accepting side: ``accept()`` queues the CC on the *listening* socket and only afterwards,
  on the application thread, inserts the new connection into the SAP. (a) An I-PDU from a
  peer that speaks first can reach the SAP before the insert; the listening socket takes
  it and drops it. (b) Our own first I-PDU, queued on the new socket, can be collected
  before the CC (the new socket comes first in the SAP) and overtake it in one AGF.
  :meth:`Llc.accept` waits for the CONNECT, then builds and inserts the connection under
  the LLC lock with the CC on the new connection's own queue, so it always leaves first.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

import nfc.llcp
import nfc.llcp.err
import nfc.llcp.llc
import nfc.llcp.pdu
import nfc.llcp.tco

from nfcpay.transport import timing

log = logging.getLogger(__name__)


class Dlc(nfc.llcp.tco.DataLinkConnection):  # type: ignore[misc]
    """A data-link connection that becomes ESTABLISHED when its CC is dispatched.

    Used for every connection-oriented socket of an :class:`Llc`: nfcpy's SAP only takes
    sockets of one class, so listening and accepted sockets are of this class too.
    """

    def enqueue(self, rcvd_pdu: Any) -> Any:
        if rcvd_pdu.name != "CC":
            return super().enqueue(rcvd_pdu)
        with self.lock:
            if not self.state.CONNECT:
                return super().enqueue(rcvd_pdu)
            # The same assignments connect() makes when it pops the CC (idempotent there).
            self.peer = rcvd_pdu.ssap
            self.send_miu = rcvd_pdu.miu
            self.send_win = rcvd_pdu.rw
            self.state.ESTABLISHED = True
            # The CC stays queued for connect() to pop; leave room for a full window of
            # I-PDUs behind it (connect() resets recv_buf to recv_win once it has popped).
            self.recv_buf = self.recv_win + 1
            self.recv_queue.append(rcvd_pdu)
            self.recv_ready.notify()
        return None


class Llc(nfc.llcp.llc.LogicalLinkController):  # type: ignore[misc]
    """LogicalLinkController whose connection set-up is free of thread races."""

    def socket(self, socket_type: int) -> Any:
        if socket_type == nfc.llcp.DATA_LINK_CONNECTION:
            return Dlc(recv_miu=128, recv_win=1)
        return super().socket(socket_type)

    def accept(self, socket: Any) -> Any:
        if not isinstance(socket, nfc.llcp.tco.DataLinkConnection):
            return super().accept(socket)
        with socket.lock:
            while not socket.recv_queue:
                if not socket.state.LISTEN:
                    raise nfc.llcp.err.Error(errno.EPIPE)
                socket.recv_ready.wait(timing.WAIT_SLICE)
        # Lock order as on the LLC thread (LLC lock, then socket lock): while we hold the
        # LLC lock nothing is dispatched or collected, so the CC cannot leave before the
        # new connection is in the SAP, and no PDU for it can reach the listening socket.
        with self.lock, socket.lock:
            connect = socket.recv_queue.popleft()
            client = Dlc(socket.recv_miu, socket.recv_win)
            client.addr, client.peer = socket.addr, connect.ssap
            client.send_miu = min(connect.miu, self.cfg["send-miu"])
            client.send_win = connect.rw
            client.state.ESTABLISHED = True
            cc = nfc.llcp.pdu.ConnectionComplete(client.peer, client.addr)
            cc.miu, cc.rw = client.recv_miu, client.recv_win
            client.send_queue.append(cc)
            self.sap[client.addr].insert_socket(client)
        log.debug("accepted CONNECT from SAP %d on SAP %d", client.peer, client.addr)
        return client
