"""Terminals as separate ``nfcpay`` processes against a real server process, over loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import ServerProcess

PROCESS_TIMEOUT = 60.0


@dataclass
class Done:
    """A finished CLI process: exit status, the last --json document, stderr."""

    status: int
    data: dict[str, Any]
    stderr: str


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cli:
    """Runs ``python -m nfcpay --json --home <root>/<name> ...`` as its own process."""

    def __init__(self, root: Path, server_url: str) -> None:
        self.root = root
        self.server_url = server_url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NFCPAY_")}

    def home(self, name: str) -> Path:
        return self.root / name

    def start(
        self, name: str, *args: str, device: str | None = None, server: str | None = None
    ) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "nfcpay", "--json", "--home", str(self.home(name))]
        command += ["--server", server or self.server_url]
        if device:
            command += ["--device", device]
        return subprocess.Popen(
            [*command, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**self.env, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"},
        )

    def run(self, name: str, *args: str, server: str | None = None) -> Done:
        return finish(self.start(name, *args, server=server))

    def tap(
        self,
        waiting: tuple[str, ...],
        tapping: tuple[str, ...],
        *,
        waiting_server: str | None = None,
    ) -> tuple[Done, Done]:
        """A waiting terminal and a tapping one on a fresh loopback port."""
        device = f"loopback:{free_udp_port()}"
        first = self.start(*waiting, "--timeout", "20", device=device, server=waiting_server)
        second = self.start(*tapping, "--timeout", "20", device=device)
        return finish(first), finish(second)

    def init(self, name: str, role: str) -> str:
        done = self.run(name, "terminal", "init", "--role", role, "--label", name)
        assert done.status == 0, done
        return str(done.data["terminal_id"])


def finish(process: subprocess.Popen[str], timeout: float = PROCESS_TIMEOUT) -> Done:
    """Wait for ``process``; one that hangs fails with the stack of each of its threads."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: dump every thread's stack
        _, stderr = process.communicate()
        raise AssertionError(f"still running after {timeout}s; its threads:\n{stderr}") from None
    lines = stdout.strip().splitlines()
    return Done(process.returncode, json.loads(lines[-1]) if lines else {}, stderr)


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def interrupt(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)


#: A process must end this soon after Ctrl-C: long enough that a slow machine never fails,
#: short enough that a hang does (people expect the prompt back in well under a second).
INTERRUPT_BOUND = 10.0

#: (waiting state, seconds from SIGINT to exit) of this run, printed at its end.
INTERRUPT_TIMINGS = pytest.StashKey[list[tuple[str, float]]]()


@pytest.fixture
def interrupt_and_time(request: pytest.FixtureRequest) -> Callable[..., Done]:
    """Send Ctrl-C to a process, wait for its exit, and record how long it took."""
    timings = request.config.stash.setdefault(INTERRUPT_TIMINGS, [])

    def run(process: subprocess.Popen[str], state: str) -> Done:
        started = time.monotonic()
        interrupt(process)
        done = finish(process, timeout=INTERRUPT_BOUND)
        timings.append((state, time.monotonic() - started))
        return done

    return run


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    timings = config.stash.get(INTERRUPT_TIMINGS, [])
    if not timings:
        return
    terminalreporter.write_sep("-", "Ctrl-C: signal to exit")
    for state, seconds in timings:
        terminalreporter.write_line(f"{seconds * 1000:8.0f} ms  {state}")


@pytest.fixture
def cli(tmp_path: Path, server: ServerProcess) -> Cli:
    return Cli(tmp_path, server.url)


class SlowProxy:
    """A TCP proxy to the server that holds every answer back for ``delay`` seconds."""

    def __init__(self, upstream: str, delay: float) -> None:
        host, port = upstream.removeprefix("http://").rsplit(":", 1)
        self.upstream = (host, int(port))
        self.delay = delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        #: Client connections accepted so far (a test waits for its process to call).
        self.connections = 0
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        with client, socket.create_connection(self.upstream) as upstream:
            forward = threading.Thread(target=self._copy, args=(client, upstream, 0.0))
            forward.start()
            self._copy(upstream, client, self.delay)
            forward.join()

    @staticmethod
    def _copy(source: socket.socket, sink: socket.socket, delay: float) -> None:
        try:
            while data := source.recv(65536):
                time.sleep(delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
