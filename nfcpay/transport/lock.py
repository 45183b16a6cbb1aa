"""One process owns a reader at a time: an OS lock file per device.

Two processes driving one USB reader would each reset it under the other and both taps
would fail in ways nobody can read. So whoever opens a real reader (a CLI tap command, or
``nfcpay ui`` while it taps) first takes ``<lock dir>/<device>.lock`` with ``flock``; a
second one is told who holds it (the file names the command and its pid) and gives up at
once instead of fighting for the reader. The kernel drops the lock when its holder exits,
however it exits, so a crashed holder never leaves the reader locked.

Simulated readers (loopback, virtual) are not locked: both sides of a loopback tap name the
same port on purpose, and a virtual chip is each process's own.

The lock is keyed by the device string as given: ``usb`` (the first reader found) and
``usb:054c:06c1`` naming the same reader are two locks. Name the reader the same way
everywhere (``nfcpay readers`` shows each one's string).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from nfcpay.errors import ReaderBusy
from nfcpay.transport.device import DeviceSpec
from nfcpay.transport.rundir import private_dir


def lock_path(spec: DeviceSpec, runtime_dir: Path | None) -> Path:
    """The lock file of the reader ``spec`` names, in the per-user ``nfcpay-readers``
    directory of ``runtime_dir`` (:func:`nfcpay.transport.rundir.private_dir`)."""
    locks = private_dir("nfcpay-readers", runtime_dir)
    return locks / (re.sub(r"[^A-Za-z0-9._-]", "_", spec.path) + ".lock")


@contextlib.contextmanager
def hold_reader(spec: DeviceSpec, holder: str, runtime_dir: Path | None) -> Iterator[None]:
    """Hold the reader ``spec`` names for this process (``holder``: the command, e.g.
    ``nfcpay merchant charge``), or raise :class:`ReaderBusy` naming who holds it. Every
    process that may open the reader must name the same ``runtime_dir``."""
    if spec.is_simulated:
        yield
        return
    path = lock_path(spec, runtime_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(spec, path) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"holder": holder, "pid": os.getpid()}).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def _busy(spec: DeviceSpec, path: Path) -> ReaderBusy:
    try:
        known = json.loads(path.read_text() or "{}")
        who = f"`{known['holder']}` (pid {int(known['pid'])})"
    except (OSError, ValueError, KeyError, TypeError):
        who = "another nfcpay process"
    return ReaderBusy(
        f"the reader {spec.path} is held by {who}; let it finish or stop it, then try again"
    )
