"""The live parts of a page, and the one tap it may run at a time.

A page is a few *panels* (an element id and the HTML the server renders for it). Whenever
something changes — a tap's status, its result, a notification — the server renders the
panel again and pushes it to every open page over server-sent events (:class:`Hub`); the
page's few lines of script (``static/ui.js``) put it in place. A page that connects gets
every panel as it is now first, so nothing that happened before it connected is missed.

A tap runs in a worker thread (:class:`Taps`): the reader is opened for that tap only and
closed when it is over, so between taps a CLI command can use it, and during one the CLI is
told that ``nfcpay ui`` holds it (:mod:`nfcpay.transport.lock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from nfcpay.errors import NfcPayError
from nfcpay.transport.reader import Reader, open_reader

#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE_S = 15.0
#: How ``nfcpay ui`` is named to a CLI command that finds the reader held.
HOLDER = "nfcpay ui"

T = TypeVar("T")


@dataclass(frozen=True)
class Swap:
    """New HTML for the element ``target``: in place of its content, or before it."""

    target: str
    html: str
    mode: Literal["replace", "prepend"] = "replace"

    def event(self) -> bytes:
        data = json.dumps({"target": self.target, "html": self.html, "mode": self.mode})
        return f"event: swap\ndata: {data}\n\n".encode()


class Hub:
    """Fans swaps out to every open event stream; :meth:`publish` may be called from any
    thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Swap | None]]] = set()

    def publish(self, swap: Swap) -> None:
        with self._lock:
            streams = list(self._streams)
        for loop, queue in streams:
            with contextlib.suppress(RuntimeError):  # its loop is closing: the page is gone
                loop.call_soon_threadsafe(queue.put_nowait, swap)

    def close(self) -> None:
        """End every open stream (the server is stopping)."""
        with self._lock:
            streams = list(self._streams)
        for loop, queue in streams:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, None)

    async def stream(self, first: Iterable[Swap]) -> AsyncIterator[bytes]:
        """The event stream of one page: ``first`` (the panels as they are), then each swap."""
        queue: asyncio.Queue[Swap | None] = asyncio.Queue()
        entry = (asyncio.get_running_loop(), queue)
        with self._lock:
            self._streams.add(entry)
        try:
            for panel in first:
                yield panel.event()
            while True:
                try:
                    async with asyncio.timeout(KEEPALIVE_S):
                        swap = await queue.get()
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if swap is None:
                    return
                yield swap.event()
        finally:
            with self._lock:
                self._streams.discard(entry)


class Taps:
    """Runs one tap at a time on the ``device`` reader, in a worker thread."""

    def __init__(self, device: str | None, runtime_dir: Path | None) -> None:
        self.device = device
        self.runtime_dir = runtime_dir
        self._busy = threading.Lock()

    @property
    def busy(self) -> bool:
        return self._busy.locked()

    def start(
        self,
        tap: Callable[[Reader], T],
        after: Callable[[T], None],
        failed: Callable[[NfcPayError], None],
    ) -> bool:
        """Run ``tap`` with the reader open, then ``after`` with its result once the reader
        is closed again; ``failed`` with any nfcpay error of either. False (nothing started)
        while another tap runs."""
        if not self._busy.acquire(blocking=False):
            return False
        worker = threading.Thread(target=self._run, args=(tap, after, failed), daemon=True)
        worker.start()
        return True

    def _run(
        self,
        tap: Callable[[Reader], T],
        after: Callable[[T], None],
        failed: Callable[[NfcPayError], None],
    ) -> None:
        try:
            with open_reader(self.device, holder=HOLDER, runtime_dir=self.runtime_dir) as reader:
                reader.settle_auto_mode()
                result = tap(reader)
            after(result)
        except NfcPayError as exc:
            failed(exc)
        except ValueError as exc:  # a malformed --device
            failed(NfcPayError(str(exc), code="bad_device"))
        finally:
            self._busy.release()
