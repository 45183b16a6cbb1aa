"""The seam between nfcpy's drivers and a virtual chip: a stand-in for nfcpy's USB transport.

nfcpy's drivers talk to their chip through ``transport.write(frame)`` and
``transport.read(timeout)`` (``nfc.clf.transport.USB``); ``nfc.clf.acr122.init``,
``nfc.clf.pn533.init`` and ``nfc.clf.rcs380.init`` take any object that behaves the same.
:class:`VirtualUsb` is that object: what the driver writes goes to the chip emulator's
``host_write``; what the chip sends back waits in a queue for the driver's next ``read``.

nfcpy's conventions, kept exactly: timeouts are milliseconds, ``0`` means wait forever, a
read that times out raises ``IOError(errno.ETIMEDOUT)`` (pn53x checks the errno), and a read
or write after :meth:`close` raises ``IOError(errno.ENODEV)`` as an unplugged reader does.
A forever-read (the RC-S380 driver never passes a timeout) is bounded by
``forever_bound`` seconds and then raises ``IOError(errno.EIO)``, so a chip emulator bug can
fail a test but never hang it.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
from collections.abc import Callable

#: The longest a "forever" read may wait (seconds); a real chip always answers well before.
FOREVER_BOUND = 90.0

#: Observer of every frame crossing the seam: fn(direction "out"|"in", frame bytes).
FrameObserver = Callable[[str, bytes], None]


class VirtualUsb:
    """Duck-types ``nfc.clf.transport.USB`` for a chip emulator."""

    TYPE = "USB"

    def __init__(
        self,
        host_write: Callable[[bytes], None],
        *,
        manufacturer_name: str,
        product_name: str,
        forever_bound: float = FOREVER_BOUND,
    ) -> None:
        self._host_write = host_write
        self.manufacturer_name = manufacturer_name
        self.product_name = product_name
        self.forever_bound = forever_bound
        self._frames: queue.Queue[bytes] = queue.Queue()
        self._closed = threading.Event()
        self.observers: list[FrameObserver] = []

    # -- the driver's side ---------------------------------------------------------------

    def write(self, frame: bytes | bytearray, timeout: int = 0) -> None:
        if self._closed.is_set():
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        data = bytes(frame)
        for observer in list(self.observers):
            observer("out", data)
        self._host_write(data)

    def read(self, timeout: int = 0) -> bytearray:
        if self._closed.is_set():
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        wait = timeout / 1000.0 if timeout else self.forever_bound
        try:
            frame = self._frames.get(timeout=wait)
        except queue.Empty:
            code = errno.ETIMEDOUT if timeout else errno.EIO
            raise OSError(code, os.strerror(code)) from None
        for observer in list(self.observers):
            observer("in", frame)
        return bytearray(frame)

    def close(self) -> None:
        self._closed.set()

    # -- the chip's side -------------------------------------------------------------------

    def to_host(self, frame: bytes) -> None:
        """Queue one frame for the driver's next ``read``."""
        self._frames.put(bytes(frame))

    def drain(self) -> None:
        """Drop frames the driver has not read (a chip reset)."""
        while True:
            try:
                self._frames.get_nowait()
            except queue.Empty:
                return

    @property
    def closed(self) -> bool:
        return self._closed.is_set()
