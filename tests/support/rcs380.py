"""A running virtual RC-S380 and its poller, for the RC-S380 and Type 3 tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from nfcpay.transport.virtual.field import (
    AirFrame,
    AirTimeout,
    Antenna,
)


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text)


class Poller:
    """A bare reader antenna sending air frames itself, as another make of reader would."""

    def __init__(self, antenna: Antenna) -> None:
        self.antenna = antenna
        antenna.carrier(True)

    def send(self, brty: str, data: str | bytes, timeout: float = 0.5) -> bytes | None:
        """The answer, or None when nobody answered in time."""
        frame = hexbytes(data) if isinstance(data, str) else data
        try:
            return self.antenna.exchange(AirFrame(brty, frame), timeout)
        except AirTimeout:
            return None

    def until_answered(self, brty: str, data: str, timeout: float = 0.01) -> bytes:
        """Repeat ``data`` until it is answered, as a reader polls (a target that is not
        receiving yet hears nothing)."""
        for _ in range(500):
            answer = self.send(brty, data, timeout)
            if answer is not None:
                return answer
        raise AssertionError(f"nobody answered {data} at {brty}")

    def leave(self) -> None:
        self.antenna.carrier(False)


@contextmanager
def running(work: Callable[[], object]) -> Iterator[Future[object]]:
    """Run ``work`` in a thread for the block; its exceptions are raised at the end."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(work)
        yield future
        future.result(timeout=30)
