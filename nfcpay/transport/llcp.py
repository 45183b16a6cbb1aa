"""Carrier 1: an LLCP connection-oriented service, ``urn:nfc:xsn:nfcpay.org:<name>``.

The waiting side binds the service name before the link comes up; the tapping side
connects to it by name. Messages travel length-prefixed (:mod:`~nfcpay.transport.framing`)
and are cut to the peer's send MIU; nfcpay announces a link and socket MIU of
``timing.LLCP_MIU`` so most messages need one I-PDU, and still works with peers that keep
the 128-byte default. nfcpy's LLC runs in a background thread for the life of the tap;
:mod:`~nfcpay.transport.llc` closes nfcpy's connection set-up races, so either side may
speak first.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import nfc
import nfc.clf
import nfc.dep
import nfc.llcp
import nfc.llcp.llc

from nfcpay import errors
from nfcpay.transport import timing
from nfcpay.transport.channel import Channel
from nfcpay.transport.device import DEP_RATES
from nfcpay.transport.framing import Deframer, chunks, frame
from nfcpay.transport.llc import DepInitiator, DepTarget, Llc, dep_length_index
from nfcpay.transport.nfcpy import map_nfc_errors
from nfcpay.transport.roles import Role

SERVICE_PREFIX = "urn:nfc:xsn:nfcpay.org:"
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9._-]*$")
_SERVICE_URN = re.compile(r"^urn:nfc:x?sn:[a-zA-Z][a-zA-Z0-9-_:.]*$")


def service_urn(service: str) -> str:
    """``pay`` → ``urn:nfc:xsn:nfcpay.org:pay``; a full ``urn:nfc:`` name is kept."""
    if service.startswith("urn:nfc:"):
        if not _SERVICE_URN.match(service):
            raise ValueError(f"malformed LLCP service name {service!r}")
        return service
    if not _SERVICE_NAME.match(service):
        raise ValueError(f"service name {service!r} must be lowercase [a-z0-9._-], e.g. 'pay'")
    return SERVICE_PREFIX + service


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


class LinkThread:
    """Runs an activated LLC's symmetry loop until closed or the link breaks."""

    def __init__(self, llc: Llc) -> None:
        self.llc = llc
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nfcpay-llc", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.llc.run(terminate=self._stop.is_set)
        except SystemExit:
            pass  # nfcpy's run loop exits this way on an I/O error; the link is gone either way
        finally:
            self._ended.set()

    @property
    def alive(self) -> bool:
        return not self._ended.is_set()

    def close(self, timeout: float = 2.0) -> None:
        """End the link (sends LLCP DISC when possible) and wait for the loop to stop."""
        self._stop.set()
        self.llc.pending.set()  # an idle loop looks at the stop flag now, not after its nap
        self._ended.wait(timeout)


def activate(
    clf: nfc.ContactlessFrontend,
    llc: nfc.llcp.llc.LogicalLinkController,
    role: Role,
    deadline: float | None,
    max_frame: int | None = None,
    also_listen: bool = False,
    dep_rate: int | None = None,
) -> Role:
    """Bring the LLCP link up as NFC-DEP target (listen) or initiator (poll), in NFC-DEP
    frames the reader's driver can carry (``max_frame`` bytes; None: any); the role taken.

    ``also_listen`` (a polling side whose reader can listen) listens for
    ``timing.ALTERNATE_LISTEN`` after each unanswered poll, so it also meets a waiting
    side whose reader can only poll (an ACR122U at the counter). ``dep_rate`` (106, 212 or
    424 kbps; None: nfcpy's 424) is the bit rate a polling side asks for after activation.
    """
    length_index = dep_length_index(max_frame)
    brs = DEP_RATES.index(dep_rate) if dep_rate else len(DEP_RATES) - 1
    turns: tuple[Role, ...] = ("poll", "listen") if role == "poll" and also_listen else (role,)
    with map_nfc_errors(f"activating LLCP as {role}er"):
        while True:
            for turn in turns:
                left = remaining(deadline)
                if left is not None and left <= 0:
                    raise errors.ExchangeTimeout(_nobody_came(role, also_listen))
                window = timing.ALTERNATE_LISTEN if len(turns) > 1 else timing.LISTEN_SLICE
                try:
                    if _activate_once(clf, llc, turn, _within(left, window), length_index, brs):
                        return turn
                except nfc.clf.CommunicationError:
                    pass  # a peer that left half-way through activation; try again
            if turns == ("poll",):
                time.sleep(timing.POLL_PAUSE)


def _within(left: float | None, window: float) -> float:
    return window if left is None else min(window, left)


def _nobody_came(role: Role, also_listen: bool) -> str:
    if role == "listen" or also_listen:
        return "no peer came within the tap timeout"
    return (
        "no listening peer came within the tap timeout. This reader can only poll, so the "
        "other terminal's reader must listen (an RC-S380 or SCL3711 can; an ACR122U "
        "cannot). Two poll-only readers meet through a tag: --carrier tag on both sides"
    )


def _activate_once(
    clf: nfc.ContactlessFrontend,
    llc: nfc.llcp.llc.LogicalLinkController,
    role: Role,
    window: float,
    length_index: int,
    brs: int,
) -> bool:
    if role == "listen":
        mac = DepTarget(clf, length_index=length_index)
        return bool(llc.activate(mac=mac, timeout=window))
    # One passive 106A poll instead of nfcpy's search (active mode, then two 106A and two
    # 212F polls 100 ms apart): every listen-capable reader answers 106A, and a miss then
    # costs one poll, not a quarter second.
    target = clf.sense(nfc.clf.RemoteTarget("106A"), iterations=1)
    if target is None or not (target.sel_res and target.sel_res[0] & 0x40):
        return False
    initiator = DepInitiator(clf, length_index=length_index)
    return bool(llc.activate(mac=initiator, target=target, brs=brs))


def new_socket(llc: nfc.llcp.llc.LogicalLinkController) -> nfc.llcp.Socket:
    sock = nfc.llcp.Socket(llc, nfc.llcp.DATA_LINK_CONNECTION)
    sock.setsockopt(nfc.llcp.SO_RCVMIU, timing.LLCP_MIU)
    sock.setsockopt(nfc.llcp.SO_RCVBUF, timing.LLCP_RECV_WINDOW)
    return sock


def _open_connection(
    link: LinkThread, listener: nfc.llcp.Socket | None, urn: str
) -> nfc.llcp.Socket:
    """Accept (waiting side) or connect (tapping side); a silent peer is cut off."""
    watchdog = threading.Timer(timing.LLCP_CONNECT_TIMEOUT, link.close)
    watchdog.daemon = True  # Ctrl-C before it is cancelled must not hold the exit back
    watchdog.start()
    try:
        with map_nfc_errors(f"opening LLCP service {urn}"):
            if listener is not None:
                return listener.accept()
            sock = new_socket(link.llc)
            sock.connect(urn)
            return sock
    except errors.LinkLost as exc:
        if watchdog.is_alive():
            raise
        raise errors.ExchangeTimeout(
            f"the peer linked up but did not open {urn} within {timing.LLCP_CONNECT_TIMEOUT}s"
        ) from exc
    finally:
        watchdog.cancel()


@contextmanager
def llcp_tap(
    clf: nfc.ContactlessFrontend,
    *,
    service: str,
    offer: bool,
    role: Role,
    deadline: float | None,
    max_frame: int | None = None,
    also_listen: bool = False,
    dep_rate: int | None = None,
) -> Iterator[LlcpChannel]:
    """One tap over LLCP: link up, service connection, then the channel; link down on exit.

    ``max_frame`` is the longest frame the reader's driver carries (see ``llc.DepInitiator``);
    ``also_listen`` lets a polling side listen between polls and ``dep_rate`` sets its bit
    rate (see :func:`activate`).
    """
    urn = service_urn(service)
    llc = Llc(miu=timing.LLCP_MIU, lto=timing.LLCP_LTO_MS, sec=False)
    listener = None
    if offer:
        listener = new_socket(llc)
        with map_nfc_errors(f"binding LLCP service {urn}"):
            listener.bind(urn)
            listener.listen(1)
    role = activate(clf, llc, role, deadline, max_frame, also_listen, dep_rate)
    link = LinkThread(llc)
    try:
        channel = LlcpChannel(_open_connection(link, listener, urn), link, role)
        yield channel
        channel.flush_acks()
    finally:
        link.close()


class LlcpChannel(Channel):
    """Framed messages over one LLCP data-link connection."""

    carrier = "llcp"

    def __init__(self, sock: nfc.llcp.Socket, link: LinkThread, role: Role) -> None:
        self.role = role
        self._sock = sock
        self._link = link
        self._deframer = Deframer()
        self._inbox: deque[bytes] = deque()

    @property
    def send_miu(self) -> int:
        """The largest information field the peer accepts per I-PDU."""
        with map_nfc_errors("reading the LLCP send MIU"):
            return int(self._sock.getsockopt(nfc.llcp.SO_SNDMIU))

    def send(self, message: bytes, timeout: float = timing.SEND_TIMEOUT) -> None:
        pieces = chunks(frame(message), self.send_miu)
        deadline = time.monotonic() + timeout
        with map_nfc_errors("sending over LLCP"):
            for piece in pieces:
                if not self._sock.send(piece):
                    raise errors.LinkLost("the LLCP connection closed while sending")
            for _ in pieces:
                self._await_ack(deadline)

    def send_partial(self, message: bytes) -> None:
        """Send only the first piece of a message (fault injection for tests and tools)."""
        with map_nfc_errors("sending over LLCP"):
            self._sock.send(chunks(frame(message), self.send_miu)[0])

    def _await_ack(self, deadline: float) -> None:
        while not self._sock.poll("acks", timing.WAIT_SLICE):
            self._check_alive()
            if time.monotonic() > deadline:
                raise errors.ExchangeTimeout("the peer did not acknowledge the message in time")

    def receive(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        with map_nfc_errors("receiving over LLCP"):
            while not self._inbox:
                if self._sock.poll("recv", timing.WAIT_SLICE):
                    piece = self._sock.recv()
                    if piece is None:
                        raise errors.LinkLost("the peer closed the LLCP connection")
                    self._inbox.extend(self._deframer.feed(piece))
                    continue
                self._check_alive()
                if time.monotonic() > deadline:
                    raise errors.ExchangeTimeout(
                        f"no complete message from the peer within {timeout:g}s"
                        + (
                            f" ({self._deframer.pending} bytes of one arrived)"
                            if self._deframer.pending
                            else ""
                        )
                    )
        return self._inbox.popleft()

    def flush_acks(self, timeout: float = 0.2) -> None:
        """Let the LLC acknowledge what we received before the link goes down.

        nfcpy sends the RR for a received I-PDU on its next loop turn; ending the link
        straight after ``receive`` would leave the sender waiting for an ack that never
        comes, so the sender could not tell a delivered last message from a lost one.
        """
        deadline = time.monotonic() + timeout
        while self._sock._tco.recv_confs and self._link.alive and time.monotonic() < deadline:
            time.sleep(0.001)

    def _check_alive(self) -> None:
        if not self._link.alive:
            raise errors.LinkLost("the NFC link to the peer was lost")
        if not self._sock._tco.state.ESTABLISHED:  # nfcpy exposes no public state accessor
            raise errors.LinkLost("the peer closed the LLCP connection")
