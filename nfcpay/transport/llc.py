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

Two timing changes, both inside the LLCP 1.3 and NFC-DEP rules for every reader:

* **No idle nap while a PDU waits.** nfcpy's run loop sleeps 1 ms before each collection
  and, once 10 SYMM PDUs have been received in the life of the link (the count never
  resets), 50 ms more whenever it has nothing to send. The side holding the turn then sits
  on a queued PDU for up to 50 ms: a merchant's result, ready after a 40 ms server call,
  waited for the tapping side's next SYMM. :class:`Llc` waits on an event that every
  queued PDU sets, and caps the idle wait at ``timing.LLCP_IDLE_PACE``. LLCP only bounds
  the gap between PDUs from above (the LTO, 500 ms here; the NFC-DEP RWT of 77 ms for the
  target's answer), so answering sooner is always allowed; the cost is a few more SYMM
  exchanges per second while idle.
* **DISC answered at once.** nfcpy's NFC-DEP target, on link deactivation, does not answer
  the DEP_REQ it holds; it waits for the initiator to time out (one RWT, 77 ms) and send
  ATN, and only answers the repeated request. Every LLCP tap paid ~80 ms at tear-down.
  :class:`DepTarget` answers the held request with the DISC straight away: an NFC-DEP
  target is meant to answer each request within RWT; ATN is the initiator's recovery
  for a target that did not.

One size change, for readers whose driver cannot carry nfcpy's longest NFC-DEP frame:

* **NFC-DEP frames that fit the reader.** nfcpy always announces the longest frame
  (LR 254) and fills the peer's. The ACR122U's driver packs each PN532 command's length
  into one byte, so a 254-byte frame (plus its length byte and the F0 start byte) raises
  ``ValueError`` inside ``nfc.clf.acr122``: any LLCP message over ~250 bytes killed the
  link. :class:`DepInitiator` and :class:`DepTarget` take the reader's frame limit (its
  profile's ``[frames]``), announce the longest LR that fits, and never send a longer
  frame than that even when the peer could take one. NFC-DEP chains longer PDUs (the MI
  bit), so only the number of frames changes, never what LLCP sees.
"""

from __future__ import annotations

import collections
import errno
import logging
import threading
from typing import Any

import nfc.dep
import nfc.llcp
import nfc.llcp.err
import nfc.llcp.llc
import nfc.llcp.pdu
import nfc.llcp.tco

from nfcpay.transport import timing

log = logging.getLogger(__name__)


class SendQueue(collections.deque):  # type: ignore[type-arg]
    """A socket's outbound PDU queue that wakes the LLC when a PDU is appended.

    nfcpy appends to ``send_queue`` from the application thread (CONNECT, I, DISC) and
    pops from the LLC thread; ``appendleft`` (a PDU put back) comes from the LLC itself.
    """

    def __init__(self, pending: threading.Event) -> None:
        super().__init__()
        self._pending = pending

    def append(self, item: Any) -> None:
        super().append(item)
        self._pending.set()


class Dlc(nfc.llcp.tco.DataLinkConnection):  # type: ignore[misc]
    """A data-link connection that becomes ESTABLISHED when its CC is dispatched.

    Used for every connection-oriented socket of an :class:`Llc`: nfcpy's SAP only takes
    sockets of one class, so listening and accepted sockets are of this class too. Its
    send queue wakes the LLC (see :class:`SendQueue`).
    """

    def __init__(self, recv_miu: int, recv_win: int, pending: threading.Event) -> None:
        super().__init__(recv_miu, recv_win)
        self.send_queue = SendQueue(pending)

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
    """LogicalLinkController free of set-up races that sends a queued PDU without delay."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        #: nfcpy's MAC (a DepInitiator or DepTarget here), set when the link is activated.
        self.mac: Any
        #: Set when an application thread queues a PDU (or wants the loop to look again).
        self.pending = threading.Event()

    def socket(self, socket_type: int) -> Any:
        if socket_type == nfc.llcp.DATA_LINK_CONNECTION:
            return Dlc(recv_miu=128, recv_win=1, pending=self.pending)
        return super().socket(socket_type)

    def collect(self, delay: float | None = None) -> Any:
        """nfcpy's collection, after waiting at most ``delay`` (capped) for a queued PDU.

        nfcpy asks for 10 ms before the initiator's first PDU, 1 ms before every later
        one (room for the application to queue a reply that rides along) and 50 ms on an
        idle link; the wait ends as soon as a PDU is queued, and never exceeds
        ``timing.LLCP_IDLE_PACE``.
        """
        if delay:
            self.pending.wait(min(delay, timing.LLCP_IDLE_PACE))
        self.pending.clear()
        return super().collect()

    def terminate(self, reason: str) -> None:
        """nfcpy's link termination, with :class:`DepInitiator` and :class:`DepTarget`
        deactivated as nfcpy's own.

        nfcpy picks the MAC's deactivation by ``type(self.mac) ==``, which a subclass
        fails; its two branches are repeated here, then nfcpy shuts the SAPs down.
        """
        mac = self.mac
        disc = nfc.llcp.pdu.Disconnect(0, 0)
        if isinstance(mac, DepInitiator):
            if self.link.DISCONNECT is True:
                self.exchange(disc, timeout=0.5)
            mac.deactivate(release=False)  # DSL, as nfcpy's own initiator
        elif isinstance(mac, DepTarget):
            mac.deactivate(data=nfc.llcp.pdu.encode(disc))
        else:
            super().terminate(reason)
            return
        self.mac = None
        try:
            super().terminate(reason)
        finally:
            self.mac = mac

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
            client = Dlc(socket.recv_miu, socket.recv_win, self.pending)
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


#: NFC-DEP's frame lengths, by the LR index ATR_REQ/ATR_RES announce (ISO/IEC 18092).
DEP_FRAME_LENGTHS = (64, 128, 192, 254)
#: Bytes a DEP frame takes beyond LR on the way to the driver: the F0 start byte (106A)
#: and the length byte. (DID and NAD, which nfcpay never uses, would come out of LR.)
DEP_FRAME_OVERHEAD = 2


def dep_length_index(max_frame: int | None) -> int:
    """The LR index of the longest NFC-DEP frame a driver that takes ``max_frame`` bytes
    can carry (None: no limit)."""
    if max_frame is None:
        return len(DEP_FRAME_LENGTHS) - 1
    fitting = [i for i, lr in enumerate(DEP_FRAME_LENGTHS) if lr + DEP_FRAME_OVERHEAD <= max_frame]
    if not fitting:
        raise ValueError(f"a reader that takes {max_frame}-byte frames cannot run NFC-DEP")
    return fitting[-1]


class _FrameLimit:
    """Announce the longest frame the reader can carry, and send no longer ones."""

    miu: int

    def __init__(self, clf: Any, *, length_index: int = len(DEP_FRAME_LENGTHS) - 1) -> None:
        super().__init__(clf)  # type: ignore[call-arg]
        self.length_index = length_index

    def _cap_miu(self) -> None:
        self.miu = min(self.miu, DEP_FRAME_LENGTHS[self.length_index] - 3)


class DepInitiator(_FrameLimit, nfc.dep.Initiator):  # type: ignore[misc]
    """nfcpy's NFC-DEP initiator, within the reader's frame limit (see the module docstring)."""

    def activate(self, target: Any = None, **options: Any) -> Any:
        options["lri"] = self.length_index
        general_bytes = super().activate(target, **options)
        if general_bytes is not None:
            self._cap_miu()
        return general_bytes


class DepTarget(_FrameLimit, nfc.dep.Target):  # type: ignore[misc]
    """nfcpy's NFC-DEP target that answers the request it holds when the link ends.

    The LLC target loop ends holding an unanswered DEP_REQ: the initiator's DISC, or the
    SYMM it sent before we decided to close. nfcpy's ``deactivate`` only listens, so the
    initiator waits one RWT, sends ATN and repeats the request before it gets the DISC.
    Here the held request is answered with the DISC at once; the rest (DSL/RLS, ATN,
    repeated requests) is nfcpy's own loop.
    """

    _holding = False
    _answer: Any = None

    def activate(self, timeout: float | None = None, **options: Any) -> Any:
        options["lrt"] = self.length_index
        general_bytes = super().activate(timeout, **options)
        if general_bytes is not None:
            self._cap_miu()
        return general_bytes

    def exchange(self, send_data: Any, timeout: float) -> Any:
        self._holding = False
        received = super().exchange(send_data, timeout)
        self._holding = received is not None
        return received

    def deactivate(self, data: Any = b"") -> None:
        if data and self._holding:
            pfb = nfc.dep.DEP_RES.PFB(
                nfc.dep.DEP_RES.LastInformation, self.nad is not None, self.did is not None,
                self.pni,
            )  # fmt: skip
            self._answer = nfc.dep.DEP_RES(pfb, self.did, self.nad, bytearray(data))
        self._holding = False
        try:
            super().deactivate(bytearray(data))
        finally:
            self._answer = None

    def send_res_recv_req(self, res: Any, deadline: float) -> Any:
        if res is None and self._answer is not None:
            res, self._answer = self._answer, None  # the first turn of nfcpy's _deactivate
        return super().send_res_recv_req(res, deadline)
