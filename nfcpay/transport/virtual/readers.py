"""Virtual readers: an emulated chip behind nfcpy's own driver, in a shared virtual field.

``--device virtual:acr122u@counter`` opens what :func:`open_virtual` builds: an antenna in
the field ``counter`` (its broker is started by the first process that names it), the
emulated chip on that antenna, and nfcpy's *unmodified* driver for that reader
(``nfc.clf.acr122``, ``nfc.clf.pn533``, ``nfc.clf.rcs380``) on the chip's USB seam. Every
frame nfcpay sends goes through the driver code a counter runs; only the USB cable and the
radio are emulated. The reader's firmware profile is then matched exactly as for a real
reader, from the driver and the firmware string the chip reports.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

import nfc
import nfc.clf.device

from nfcpay import errors
from nfcpay.transport.device import EMULATED_CHIPS
from nfcpay.transport.virtual.broker import (
    BrokerError,
    BrokerNotRunning,
    RemoteAntenna,
    connect,
    default_field_dir,
    open_antenna,
)


class VirtualFrontend(nfc.ContactlessFrontend):  # type: ignore[misc]
    """An nfcpy frontend whose device is an emulated chip; closing it leaves the field."""

    def __init__(
        self, device: nfc.clf.device.Device, antenna: RemoteAntenna, field_dir: Path
    ) -> None:
        super().__init__()  # no path: nfcpy opens nothing
        self.device = device
        self._antenna = antenna
        #: The directory of the field's socket (where its tags are asked for, too).
        self.field_dir = field_dir

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._antenna.close()


def unreachable(field: str, exc: BrokerError) -> errors.ReaderNotFound:
    """The error for a virtual field that cannot be reached, saying how to start it."""
    if isinstance(exc, BrokerNotRunning):
        return errors.ReaderNotFound(
            f"virtual field {field!r} is not running (a virtual reader naming it, or "
            f"`nfcpay field start --field {field}`, starts it)"
        )
    return errors.ReaderNotFound(f"virtual field {field!r}: {exc}")


def chip_opener(chip: str) -> Callable[..., nfc.clf.device.Device]:
    """``open_<chip>(antenna, *, slack)`` from ``nfcpay.transport.virtual.<chip>``, imported
    only now (ValueError for a chip that is not emulated)."""
    if chip not in EMULATED_CHIPS:
        raise ValueError(f"no emulated chip {chip!r}: there are {', '.join(EMULATED_CHIPS)}")
    module = importlib.import_module(f"nfcpay.transport.virtual.{chip}")
    return getattr(module, f"open_{chip}")  # type: ignore[no-any-return]


def open_virtual(chip: str, field: str, runtime_dir: Path | None) -> VirtualFrontend:
    """A frontend on an emulated ``chip`` in the virtual field ``field``, whose socket lies
    in the fields directory of ``runtime_dir`` (see ``broker.default_field_dir``)."""
    opener = chip_opener(chip)
    try:
        field_dir = default_field_dir(runtime_dir)
        antenna = open_antenna(field, f"{chip}-{os.getpid()}", directory=field_dir)
    except BrokerError as exc:
        raise unreachable(field, exc) from exc
    try:
        device = opener(antenna)
    except BaseException:
        antenna.close()
        raise
    device._path = f"virtual:{chip}@{field}"
    return VirtualFrontend(device, antenna, field_dir)


def tags_in(field: str, field_dir: Path) -> list[dict[str, str]]:
    """The virtual tags lying in ``field`` (its socket in ``field_dir``) now, with their
    memory (what a trace of a virtual run needs to be replayed):
    ``[{"kind": "ntag215", "memory": "04a1…"}, …]``."""
    remote = connect(field, directory=field_dir, start=False)
    try:
        return [
            {"kind": tag["kind"], "memory": remote.read_tag(tag["id"])["memory"].hex()}
            for tag in remote.status()["tags"]
        ]
    finally:
        remote.close()
