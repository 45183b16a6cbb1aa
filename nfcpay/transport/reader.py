"""Opening a reader and running taps on it."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from types import TracebackType

import nfc

from nfcpay import errors
from nfcpay.transport import nfcpy
from nfcpay.transport.channel import Channel, ObservedChannel
from nfcpay.transport.device import LOOPBACK_HOST, DeviceSpec, parse_device
from nfcpay.transport.lock import hold_reader
from nfcpay.transport.profiles import FirmwareProfile, match_profile, profile_by_name
from nfcpay.transport.roles import MODES, Carrier, Mode, TapPlan, plan_tap, role_error
from nfcpay.transport.trace import TraceRecorder

log = logging.getLogger(__name__)


class Reader:
    """An opened NFC reader with its firmware profile. Use as a context manager."""

    def __init__(
        self,
        clf: nfc.ContactlessFrontend,
        spec: DeviceSpec,
        profile: FirmwareProfile,
        mode: Mode,
        field_dir: Path | None = None,
    ) -> None:
        self.clf = clf
        self.spec = spec
        self.profile = profile
        self.mode = mode
        #: A virtual reader's fields' directory (None for the others).
        self.field_dir = field_dir
        #: The carrier a tap uses when it names none ("auto": the profile's preference).
        self.carrier: Carrier = "auto"
        #: Set by ``--trace``: told every NDEF message, so that it can redact its secrets.
        self.recorder: TraceRecorder | None = None
        #: Released by :meth:`close`: this process's hold on the reader (see ``lock``).
        self.hold = ExitStack()

    def settle_auto_mode(self) -> None:
        """In "auto", a reader that can neither listen nor play a card polls even where its
        side waits (the other side's reader must then listen)."""
        if self.mode == "auto" and not (self.profile.can_listen or self.profile.can_emulate_tt3):
            self.mode = "poll"

    def field_tags(self) -> list[dict[str, str]]:
        """The virtual tags in a virtual reader's field (kind, memory); [] for others."""
        if self.field_dir is None:
            return []
        from nfcpay.transport.virtual.readers import tags_in

        return tags_in(str(self.spec.field), self.field_dir)

    def observe_message(self, octets: bytes) -> None:
        """An NDEF message this reader carried (either way), for the trace, if any."""
        if self.recorder is not None:
            self.recorder.observe_message(octets)

    @property
    def path(self) -> str:
        return str(self.clf.device.path)

    def describe(self) -> str:
        """One line for humans: which reader, which profile, what it can do."""
        device = self.clf.device
        product = f"{device.vendor_name} {device.product_name}".strip()
        playing = f" playing {self.profile.name}" if self.spec.as_profile else ""
        listens = "listens and polls" if self.profile.can_listen else "polls only (cannot listen)"
        carriers = "/".join(self.profile.preferred_carriers)
        return (
            f"{product} ({device.chipset_name}) on {self.path}{playing}: "
            f"profile {self.profile.id}, {listens}, carriers {carriers}"
        )

    def plan(self, *, offer: bool, carrier: Carrier = "auto", mode: Mode | None = None) -> TapPlan:
        """What a tap would do on this reader (carrier and role), without touching RF."""
        if carrier == "auto":
            carrier = self.carrier
        return plan_tap(self.profile, offer=offer, mode=mode or self.mode, carrier=carrier)

    @contextmanager
    def tap(
        self,
        service: str = "pay",
        *,
        offer: bool,
        carrier: Carrier = "auto",
        timeout: float | None = None,
        mode: Mode | None = None,
    ) -> Iterator[Channel]:
        """Wait for (``offer=True``) or make (``offer=False``) one tap; yield its Channel.

        ``timeout`` bounds the wait for the peer (None waits forever); the conversation's
        own waits are the ``timeout`` arguments of ``Channel.receive``/``send``. Leaving the
        block ends the link. A waiting side serves back-to-back taps by calling ``tap()``
        again in a loop.
        """
        plan = self.plan(offer=offer, carrier=carrier, mode=mode)
        deadline = None if timeout is None else time.monotonic() + timeout
        with ExitStack() as stack:
            try:
                channel = stack.enter_context(self._open_carrier(plan, service, offer, deadline))
            except errors.UnsupportedByReader as exc:
                raise role_error(self.profile, plan.carrier, plan.role, str(exc)) from exc
            yield (
                channel if self.recorder is None else ObservedChannel(channel, self.observe_message)
            )

    def _open_carrier(
        self, plan: TapPlan, service: str, offer: bool, deadline: float | None
    ) -> AbstractContextManager[Channel]:
        if plan.carrier == "llcp":
            from nfcpay.transport.llcp import llcp_tap

            return llcp_tap(
                self.clf,
                service=service,
                offer=offer,
                role=plan.role,
                deadline=deadline,
                max_frame=min(self.profile.max_send, self.profile.max_recv),
                also_listen=plan.also_listen,
                dep_rate=self.spec.dep_rate,
            )
        from nfcpay.transport.tt3 import tt3_tap

        return tt3_tap(
            self.clf, role=plan.role, deadline=deadline, max_frame=self.profile.emulation_max_frame
        )

    def close(self) -> None:
        try:
            self.clf.close()
        finally:
            self.hold.close()
            if self.recorder is not None:
                self.recorder.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_reader(
    device: str | None = None,
    *,
    mode: Mode = "auto",
    holder: str = "nfcpay",
    runtime_dir: Path | None = None,
) -> Reader:
    """Open a reader by device string (see :mod:`nfcpay.transport.device`) or auto-detect.

    A real reader is held for this process until the reader is closed (``holder`` names the
    command); one another process holds raises :class:`~nfcpay.errors.ReaderBusy`. The locks
    and the virtual fields live in ``runtime_dir`` (the CLI passes ``$XDG_RUNTIME_DIR``; see
    :mod:`nfcpay.transport.rundir`): processes that share a reader or a field name the same."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    spec = parse_device(device)
    with ExitStack() as hold:
        hold.enter_context(hold_reader(spec, holder, runtime_dir))
        reader = _open(spec, mode, runtime_dir)
        reader.hold = hold.pop_all()
        return reader


def _open(spec: DeviceSpec, mode: Mode, runtime_dir: Path | None) -> Reader:
    if spec.kind == "loopback":
        profile = profile_by_name(spec.as_profile or "loopback")
        refuse = None if profile.can_listen or profile.can_emulate_tt3 else profile.name
        clf = nfcpy.open_loopback(LOOPBACK_HOST, spec.port or 0, refuse_listen_as=refuse)
        return Reader(clf, spec, profile, mode)
    if spec.kind == "virtual":
        from nfcpay.transport.virtual.readers import open_virtual

        with nfcpy.map_nfc_errors(f"opening {spec.path}"):
            virtual = open_virtual(str(spec.chip), str(spec.field), runtime_dir)
        return _with_profile(virtual, spec, mode, field_dir=virtual.field_dir)
    if spec.path.startswith("usb"):
        from nfcpay.transport.discovery import libusb_version

        libusb_version()
    return _with_profile(nfcpy.open_frontend(spec.path), spec, mode)


def _with_profile(
    clf: nfc.ContactlessFrontend, spec: DeviceSpec, mode: Mode, field_dir: Path | None = None
) -> Reader:
    """``clf`` as a :class:`Reader` with the firmware profile its driver reports (closed on
    a reader that matches none)."""
    try:
        profile = _profile_for(clf)
    except BaseException:
        clf.close()
        raise
    return Reader(clf, spec, profile, mode, field_dir)


def _profile_for(clf: nfc.ContactlessFrontend) -> FirmwareProfile:
    device = clf.device
    driver = type(device).__module__.rsplit(".", 1)[-1]
    firmware = str(getattr(device, "_chipset_name", "") or "")
    profile = match_profile(driver, usb_id_of(str(device.path)), firmware)
    if profile is None:
        raise errors.ProfileError(
            f"no firmware profile matches {device} (nfcpy driver {driver!r}, firmware "
            f"{firmware!r}); add one to firmware_profiles/ (see its README)"
        )
    return profile


def usb_id_of(path: str) -> str | None:
    """``vvvv:pppp`` of the USB device nfcpy opened as ``usb:BUS:DEV``, when it can be found."""
    parts = path.split(":")
    if len(parts) != 3 or parts[0] != "usb":
        return None
    from nfc.clf.transport import USB

    for vid, pid, bus, dev in USB.find(path) or ():
        if (int(bus), int(dev)) == (int(parts[1]), int(parts[2])):
            return f"{vid:04x}:{pid:04x}"
    return None
