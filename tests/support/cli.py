"""Terminals as separate ``nfcpay`` processes (:class:`Cli`) against a real server process,
over loopback or virtual readers, and how a test waits for and interrupts them."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass
class ReaderPair:
    """The readers of a tap: loopback (a fresh port per tap), or two virtual chips in one
    virtual field (``virtual:CHIP@FIELD``), the waiting side's chip first."""

    waiting_chip: str | None = None
    tapping_chip: str | None = None
    field: str = "e2e"

    def devices(self) -> tuple[str, str]:
        """(waiting side's device, tapping side's device) for the next tap."""
        if self.waiting_chip is None:
            device = f"loopback:{free_udp_port()}"
            return device, device
        return (
            f"virtual:{self.waiting_chip}@{self.field}",
            f"virtual:{self.tapping_chip}@{self.field}",
        )


class Cli:
    """Runs ``python -m nfcpay --json --home <root>/<name> ...`` as its own process."""

    def __init__(self, root: Path, server_url: str) -> None:
        self.root = root
        self.server_url = server_url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NFCPAY_")}
        self.env["XDG_RUNTIME_DIR"] = str(root)  # reader locks (and fields) of this test's own
        self.readers = ReaderPair()
        self._fields_dir: Path | None = None
        self._processes: list[subprocess.Popen[str]] = []

    def use_virtual_readers(self, waiting_chip: str, tapping_chip: str) -> None:
        """Tap with emulated chips behind nfcpy's drivers, in a field of this test's own
        (the same field when called again: only the chips change)."""
        if self._fields_dir is None:
            runtime = Path(tempfile.mkdtemp(prefix="nfe2e-"))  # short: a socket path's limit
            self.env["XDG_RUNTIME_DIR"] = str(runtime)
            self._fields_dir = runtime / "nfcpay-fields"
        self.readers = ReaderPair(waiting_chip, tapping_chip)

    def close(self) -> None:
        """Kill what a failed test left running (its pipes closed, so no ResourceWarning
        surfaces in a later test), and stop this test's virtual field, if it has one."""
        for process in self._processes:
            if process.poll() is None:
                process.kill()
            process.communicate()
        if self._fields_dir is not None:
            from nfcpay.transport.virtual.broker import stop_field

            stop_field(self.readers.field, directory=self._fields_dir)
            shutil.rmtree(self._fields_dir.parent, ignore_errors=True)

    def home(self, name: str) -> Path:
        return self.root / name

    def start(
        self,
        name: str,
        *args: str,
        device: str | None = None,
        server: str | None = None,
        answers: str | None = None,
        silent_person: bool = False,
    ) -> subprocess.Popen[str]:
        """Start a terminal; with ``answers`` it runs for a person (no --json), who types
        ``answers`` at its prompts; with ``silent_person`` for one who never answers."""
        person = answers is not None or silent_person
        command = [sys.executable, "-m", "nfcpay", "--home", str(self.home(name))]
        command += ["--server", server or self.server_url]
        if not person:
            command.append("--json")
        if device:
            command += ["--device", device]
        process = subprocess.Popen(
            [*command, *args],
            stdin=subprocess.PIPE if person else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**self.env, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"},
            preexec_fn=ctrl_c_as_at_a_terminal,
        )
        self._processes.append(process)
        if process.stdin is not None and not silent_person:
            process.stdin.write(answers or "")
            process.stdin.close()
            process.stdin = None  # all typed: communicate() must not touch it again
        return process

    def run(self, name: str, *args: str, server: str | None = None) -> Done:
        return finish(self.start(name, *args, server=server))

    def tap(
        self,
        waiting: tuple[str, ...],
        tapping: tuple[str, ...],
        *,
        waiting_server: str | None = None,
    ) -> tuple[Done, Done]:
        """A waiting terminal and a tapping one, on this test's readers."""
        waiting_device, tapping_device = self.readers.devices()
        first = self.start(
            *waiting, "--timeout", "20", device=waiting_device, server=waiting_server
        )
        second = self.start(*tapping, "--timeout", "20", device=tapping_device)
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
    data = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return Done(process.returncode, data, stderr + stdout if not data else stderr)


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def interrupt(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)


def ctrl_c_as_at_a_terminal() -> None:
    """In a started terminal, before it runs: Ctrl-C (SIGINT) interrupts it, as at a shell.

    A test run started in the background by a shell without job control (``pytest &`` in a
    script, some CI launchers) inherits SIGINT *ignored*, and Python then installs no handler
    of its own: every SIGINT a test sends would be lost and the process would wait on."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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


CARD = ("--number", "4111 1111 1111 1111", "--expiry", "12/39", "--limit", "500,000")


def owner_with_card(cli: Cli) -> str:
    """Terminal ``user``, a user terminal with a card; returns its terminal id."""
    user_id = cli.init("user", "user")
    done = cli.run("user", "user", "add-card", *CARD)
    assert done.status == 0 and done.data["source"]["masked"] == "411111******1111"
    return user_id


def ready_pair(cli: Cli, amount: str = "50000") -> str:
    """Owner, target holding a grant of ``amount`` KRW for 3 uses, and a merchant ``shop``;
    returns the grant id."""
    owner_with_card(cli)
    cli.init("target", "target")
    cli.init("shop", "merchant")
    give, receive = cli.tap(
        ("user", "user", "give", "--amount", amount, "--uses", "3", "--yes"),
        ("target", "target", "receive"),
    )
    assert (give.status, receive.status) == (0, 0), (give, receive)
    return str(give.data["grant"]["grant_id"])


class LostAnswers(SlowProxy):
    """A TCP proxy to the server that passes every request on and loses every answer: the
    server does the work, and the client sees its connection drop instead of the answer."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, 0.0)

    def _pipe(self, client: socket.socket) -> None:
        with client, socket.create_connection(self.upstream) as upstream:
            threading.Thread(target=self._copy, args=(client, upstream, 0.0), daemon=True).start()
            with contextlib.suppress(OSError):
                upstream.recv(65536)  # the server's answer, lost on the way back
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
