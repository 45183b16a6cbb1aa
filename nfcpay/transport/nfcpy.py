"""The seam to nfcpy: opening a frontend and translating nfcpy's exceptions.

nfcpy reports failures in four families: ``nfc.clf.Error`` (RF and driver level),
``nfc.tag.TagCommandError`` (tag commands), ``nfc.llcp.Error`` (LLCP sockets, with an errno)
and plain ``IOError`` with an errno (opening a device). :func:`map_nfc_errors` is the one
place where all of them become :mod:`nfcpay.errors` transport errors, raised ``from`` the
original so the nfcpy traceback stays available with ``-vv``.

The loopback reader is nfcpy's own ``udp`` driver with three changes (see
:class:`LoopbackDevice`): a poll that finds nobody gives up after 20 ms, as RF hardware
does, instead of the driver's one second; a listening side that has not been activated
yet ignores a stale "RF off" from the previous tap's poller; and a port that
``/etc/services`` names (57000 is "dircproxy") opens like any other.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import nfc
import nfc.clf
import nfc.clf.udp
import nfc.dep
import nfc.llcp
import nfc.tag

from nfcpay import errors

log = logging.getLogger(__name__)

#: How long the loopback reader waits for a card's answer to a poll (SENS_REQ/SENSF_REQ).
LOOPBACK_SENSE_TIMEOUT = 0.02

#: nfcpy exception class → (nfcpay error class, what it means in words).
#: Looked up along the MRO, so a subclass nfcpy adds later still maps to its family.
NFC_ERROR_MAP: dict[type[BaseException], tuple[type[errors.TransportError], str]] = {
    nfc.clf.UnsupportedTargetError: (errors.UnsupportedByReader, "the reader cannot do this"),
    nfc.clf.BrokenLinkError: (errors.LinkLost, "the peer left the field"),
    nfc.clf.TimeoutError: (errors.ExchangeTimeout, "the peer did not answer in time"),
    nfc.clf.TransmissionError: (errors.LinkLost, "frames were corrupted in transmission"),
    nfc.clf.ProtocolError: (errors.ProtocolViolation, "the peer broke the NFC protocol"),
    nfc.clf.CommunicationError: (errors.LinkLost, "communication with the peer failed"),
    nfc.clf.Error: (errors.TransportError, "the reader reported an error"),
    nfc.tag.TagCommandError: (errors.LinkLost, "a tag command failed"),
    nfc.llcp.ConnectRefused: (errors.ProtocolViolation, "the peer refused the LLCP service"),
    nfc.llcp.Error: (errors.LinkLost, "the LLCP link or connection is gone"),
}

_OS_ERROR_MAP: dict[int, tuple[type[errors.TransportError], str]] = {
    errno.ENODEV: (errors.ReaderNotFound, "no such reader"),
    errno.ENOENT: (errors.ReaderNotFound, "no such device file"),
    errno.EACCES: (errors.ReaderAccessDenied, "permission denied (run `nfcpay doctor`)"),
    errno.EPERM: (errors.ReaderAccessDenied, "permission denied (run `nfcpay doctor`)"),
    errno.EBUSY: (
        errors.ReaderAccessDenied,
        "the reader is claimed by another program or kernel driver (run `nfcpay doctor`)",
    ),
}


def translate(exc: BaseException, context: str) -> errors.TransportError | None:
    """The nfcpay error for an nfcpy (or OS) exception, or None when it is not ours to map."""
    for cls in type(exc).__mro__:
        if cls in NFC_ERROR_MAP:
            target, meaning = NFC_ERROR_MAP[cls]
            detail = str(exc) or type(exc).__name__
            return target(f"{context}: {meaning} (nfcpy: {type(exc).__name__}: {detail})")
    if isinstance(exc, OSError) and exc.errno in _OS_ERROR_MAP:
        target, meaning = _OS_ERROR_MAP[exc.errno]
        return target(f"{context}: {meaning} ({exc.strerror or exc})")
    return None


@contextmanager
def map_nfc_errors(context: str) -> Iterator[None]:
    """Re-raise nfcpy exceptions inside the block as nfcpay transport errors.

    ``context`` says what was being done ("opening usb:072f:2200", "sending on LLCP") and
    starts the message. Our own errors pass through untouched.
    """
    try:
        yield
    except errors.NfcPayError:
        raise
    except Exception as exc:
        mapped = translate(exc, context)
        if mapped is None:
            raise
        raise mapped from exc


class LoopbackDevice(nfc.clf.udp.Device):  # type: ignore[misc]
    """nfcpy's udp driver with RF-like poll timeouts.

    The udp driver waits a full second for an answer to each SENS_REQ/SENSF_REQ. Real
    readers give up after a few milliseconds, so on loopback a poll that lands while the
    peer is between two listen calls would cost a second per tap. Only the waits made while
    sensing are shortened; every frame still goes through the unmodified driver code.

    The driver's poller announces "RF off" from the *previous* link only when it next
    polls, in the datagram right before its SENS_REQ. A listen call that gets it gives up,
    and the next listen call opens a new socket, dropping the SENS_REQ: every tap from the
    same poller lost one poll (20 ms wait plus ``timing.POLL_PAUSE``). A device waiting for
    its activation has no link the field could break, so until the first frame of a listen
    call arrives, "RF off" is skipped; after it, it still ends the link as before.
    """

    _sensing = False
    _awaiting_activation = False
    #: Set to a reader name to refuse every listen call as that reader's nfcpy driver does.
    refuses_listen_as: str | None = None

    def __init__(self, host: str, port: int) -> None:
        # nfcpy's __init__, but for one call: it passes the port through getnameinfo()
        # without NI_NUMERICSERV, so a port /etc/services names (57000 is "dircproxy")
        # comes back as that name and int() fails — a random loopback port could crash.
        self.addr = (socket.gethostbyname(host), int(port))
        self._path = f"{self.addr[0]}:{self.addr[1]}"
        self.socket = None
        self._create_socket()
        #: Set while a listen call holds the shared port (the "field"), so that a test can
        #: send to it without racing the driver, which closes and reopens its socket.
        self.listening_port_bound = threading.Event()

    def _bind_socket(self, time_to_return: float) -> bool:
        bound = bool(super()._bind_socket(time_to_return))
        if bound:
            self.listening_port_bound.set()
        return bound

    def mute(self) -> None:
        self.listening_port_bound.clear()
        super().mute()

    def _recv_data(self, timeout: float | None, *brty_list: str) -> Any:
        if self._sensing and timeout is not None:
            timeout = min(timeout, LOOPBACK_SENSE_TIMEOUT)
        if not self._awaiting_activation:
            return super()._recv_data(timeout, *brty_list)
        deadline = None if timeout is None else time.time() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.time())
            try:
                received = super()._recv_data(left, *brty_list)
            except nfc.clf.BrokenLinkError:
                log.debug("skipped a stale RF off while waiting to be activated")
                continue
            self._awaiting_activation = False
            return received

    def send_cmd_recv_rsp(self, target: Any, data: Any, timeout: float) -> Any:
        """nfcpy's exchange as the initiator, but an NFC-DEP attention request (ATN) hears
        only answers to itself, as on the air.

        An initiator sends ATN when the target's answer did not come within the response
        waiting time (77 ms). On the air an answer that comes later than that is lost: the
        initiator no longer listens for it. Over UDP it waits in the socket, and nfcpy's DEP,
        reading it where it expects the ATN's answer, ends the link ("expected NFC-DEP
        Attention response"): a busy machine that delayed one answer lost the tap. So after
        an ATN a late information answer is dropped and the wait goes on; the target answers
        the ATN and, when the initiator repeats its request, sends that answer again."""
        if data is None or timeout <= 0 or _dep_format(data, target.brty) != _ATTENTION:
            return super().send_cmd_recv_rsp(target, data, timeout)
        deadline = time.time() + timeout
        self._send_data(target.brty, data, target._addr)
        while True:
            brty, answer, _ = self._recv_data(max(0.0, deadline - time.time()), target.brty)
            if _dep_format(answer, brty) not in _INFORMATION:
                return answer
            log.debug("dropped a late NFC-DEP answer that crossed an attention request")

    def sense_tta(self, target: Any) -> Any:
        return self._sense(super().sense_tta, target)

    def sense_ttb(self, target: Any) -> Any:
        return self._sense(super().sense_ttb, target)

    def sense_ttf(self, target: Any) -> Any:
        return self._sense(super().sense_ttf, target)

    def listen_tta(self, target: Any, timeout: float) -> Any:
        return self._listen(super().listen_tta, target, timeout)

    def listen_ttb(self, target: Any, timeout: float) -> Any:
        return self._listen(super().listen_ttb, target, timeout)

    def listen_ttf(self, target: Any, timeout: float) -> Any:
        return self._listen(super().listen_ttf, target, timeout)

    def listen_dep(self, target: Any, timeout: float) -> Any:
        return self._listen(super().listen_dep, target, timeout)

    def _listen(self, method: Any, target: Any, timeout: float) -> Any:
        if self.refuses_listen_as:
            raise nfc.clf.UnsupportedTargetError(f"{self.refuses_listen_as} cannot listen")
        self._awaiting_activation = True
        try:
            return method(target, timeout)
        finally:
            self._awaiting_activation = False

    def _sense(self, method: Any, target: Any) -> Any:
        self._sensing = True
        try:
            return method(target)
        finally:
            self._sensing = False


#: NFC-DEP PDU formats (the PFB's high nibble, nfcpy's numbers): information PDUs (the last
#: of a chain, or one with more to come) and the attention request or its answer.
_INFORMATION = (nfc.dep.DEP_RES.LastInformation, nfc.dep.DEP_RES.MoreInformation)
_ATTENTION = nfc.dep.DEP_REQ.Attention


def _dep_format(frame: Any, brty: str) -> int | None:
    """The NFC-DEP PDU format of a DEP_REQ or DEP_RES ``frame`` as the udp driver carries it
    (at 106A after a 0xF0 start byte, then the length); None for any other frame."""
    body = bytes(frame[1:] if brty == "106A" else frame)
    if len(body) < 4 or body[1:3] not in (nfc.dep.DEP_REQ.PDU_CODE, nfc.dep.DEP_RES.PDU_CODE):
        return None
    return body[3] >> 4


def open_frontend(path: str) -> nfc.ContactlessFrontend:
    """Open an nfcpy frontend on an nfcpy device path; raises ReaderNotFound when absent."""
    clf = nfc.ContactlessFrontend()
    with map_nfc_errors(f"opening {path}"):
        found = clf.open(path)
    if not found:
        raise errors.ReaderNotFound(
            f"no NFC reader found on {path!r} (`nfcpay doctor` checks why; without a reader "
            "use --device loopback:PORT)"
        )
    return clf


def open_loopback(
    host: str, port: int, *, refuse_listen_as: str | None = None
) -> nfc.ContactlessFrontend:
    """A frontend on the loopback reader (see :class:`LoopbackDevice`)."""
    clf = nfc.ContactlessFrontend()
    with map_nfc_errors(f"opening loopback:{port}"):
        device = LoopbackDevice(host, port)
    device.refuses_listen_as = refuse_listen_as
    device._vendor_name = "nfcpay"
    device._device_name = "Loopback"
    device._chipset_name = "UDP"
    device._path = f"loopback:{port}"
    clf.device = device
    return clf
