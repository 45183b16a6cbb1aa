"""Fixtures for transport tests: free UDP ports and scripted peer processes."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.loopback import loop

REPO = Path(__file__).resolve().parents[2]
LATE_PEER = Path(__file__).with_name("late_peer.py")


@pytest.fixture
def port() -> int:
    """A UDP port nobody uses right now, for one loopback 'RF field'."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Peer:
    """One ``python -m nfcpay.transport.peer`` process; its JSON events arrive on a queue."""

    def __init__(self, *args: str, late: str | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        program = [str(LATE_PEER), late] if late else ["-m", "nfcpay.transport.peer"]
        runtime = os.environ.get("XDG_RUNTIME_DIR")  # the test's own, for virtual fields
        where = ["--runtime-dir", runtime] if runtime else []
        self.proc = subprocess.Popen(
            [sys.executable, *program, *args, *where],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._events.put(json.loads(line))
        self._events.put({"event": "exit"})

    def next(self, timeout: float = 20.0, *, event: str | None = None) -> dict[str, Any]:
        """The next event (of the given kind), or fail the test after ``timeout`` seconds."""
        while True:
            try:
                item = self._events.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"peer {self.proc.args} sent nothing within {timeout}s")
            if event is None or item["event"] in (event, "exit", "error"):
                return item

    def taps(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        found = [self.next(timeout, event="tap") for _ in range(count)]
        for item in found:
            assert item["event"] == "tap", f"{item} (stderr: {self.stderr()})"
        return found

    def wait(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()[-3000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


#: "virtual-pn533" runs: the emulated chip that plays a profile's part instead of its own.
#: An SCL3711 (PN533) stands in for the RC-S380, the reader that listens, so the Type 3 tag
#: mailbox is also emulated through the PN533's CIU (64-byte frames) and NFC-DEP runs on it.
PN533_STANDS_IN = {"rcs380": "pn533"}


@pytest.fixture(params=["loopback", "virtual", "virtual-pn533"])
def reader(
    request: pytest.FixtureRequest, port: int, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], str]]:
    """``reader(profile)``: the device string of a reader of that profile — the loopback
    port posing as it, or its emulated chip behind nfcpy's real driver, in a virtual field
    of this test's own (peer processes inherit its directory); with "virtual-pn533", an
    emulated PN533 plays the RC-S380 (:data:`PN533_STANDS_IN`)."""
    if request.param == "loopback":
        yield lambda profile: loop(port, profile)
        return
    runtime = Path(tempfile.mkdtemp(prefix="nft-"))  # short: a socket path's limit
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    chips = PN533_STANDS_IN if request.param == "virtual-pn533" else {}
    yield lambda profile: f"virtual:{chips.get(profile, profile)}@t"
    from nfcpay.transport.virtual.broker import stop_field

    stop_field("t", directory=runtime / "nfcpay-fields")
    shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def spawn() -> Iterator[Any]:
    """Start peer processes (``late="connect"|"accept"|"answer"``: late_peer.py); all killed
    at the end."""
    peers: list[Peer] = []

    def start(*args: str, late: str | None = None) -> Peer:
        peer = Peer(*args, late=late)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.close()
