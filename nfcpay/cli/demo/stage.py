"""The demo's stage: a throw-away directory, the bundled server and the terminals' processes.

Every terminal is a separate ``nfcpay`` process with its own home, exactly as on four
laptops; the stage starts them and reads each one's ``--json`` answer and exit status.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from nfcpay.money import format_minor

TAP_TIMEOUT = "20"
#: How long the bundled server may take to say where it listens.
SERVER_START_TIMEOUT = 30.0

Json = dict[str, Any]


@dataclass
class Outcome:
    """One CLI process: its exit status and its --json document."""

    status: int
    data: Json
    stderr: str


def krw(minor: int) -> str:
    return format_minor(minor, "KRW")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


DEMO_FIELD = "demo"


class Stage:
    """The demo's directory, server process and the terminals' command runner."""

    def __init__(self, root: Path, *, virtual: bool = False) -> None:
        self.root = root
        self.server_url = ""
        self._server: subprocess.Popen[str] | None = None
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("NFCPAY_")}
        self._env["PYTHONUNBUFFERED"] = "1"
        self.virtual = virtual
        if virtual:  # the demo's own field, in its own directory
            (root / "run").mkdir(mode=0o700, parents=True, exist_ok=True)
            self._env["XDG_RUNTIME_DIR"] = str(root / "run")

    def devices(self) -> tuple[str, str]:
        """(waiting side's reader, tapping side's reader) for the next tap: one fresh
        loopback port, or a virtual RC-S380 waiting and a virtual ACR122U tapping."""
        if self.virtual:
            return f"virtual:rcs380@{DEMO_FIELD}", f"virtual:acr122u@{DEMO_FIELD}"
        device = f"loopback:{free_udp_port()}"
        return device, device

    def stop_field(self) -> None:
        if self.virtual:
            from nfcpay.transport.virtual.broker import stop_field

            stop_field(DEMO_FIELD, directory=self.root / "run" / "nfcpay-fields")

    def home(self, name: str) -> Path:
        return self.root / name

    def start_server(self) -> None:
        command = [sys.executable, "-m", "nfcpay", "server", "run"]
        command += ["--data-dir", str(self.root / "server"), "--port", "0"]
        self._server = subprocess.Popen(  # noqa: S603 - our own interpreter and args
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self._env,
        )
        self.server_url = _listening_url(self._server, SERVER_START_TIMEOUT)

    def stop_server(self) -> None:
        if self._server is not None and self._server.poll() is None:
            self._server.terminate()
            self._server.wait(10)

    def start(self, name: str, *args: str, device: str | None = None) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "nfcpay", "--json", "--home", str(self.home(name))]
        command += ["--server", self.server_url]
        if device:
            command += ["--device", device]
        return subprocess.Popen(  # noqa: S603 - our own interpreter and args
            [*command, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self._env,
        )

    def run(self, name: str, *args: str) -> Outcome:
        return finish(self.start(name, *args))

    def tap(self, waiting: tuple[str, ...], tapping: tuple[str, ...]) -> tuple[Outcome, Outcome]:
        """Run a waiting terminal and a tapping one against each other."""
        waiting_device, tapping_device = self.devices()
        first = self.start(
            waiting[0], *waiting[1:], "--timeout", TAP_TIMEOUT, device=waiting_device
        )
        second = self.start(
            tapping[0], *tapping[1:], "--timeout", TAP_TIMEOUT, device=tapping_device
        )
        return finish(first), finish(second)


def _listening_url(server: subprocess.Popen[str], timeout: float) -> str:
    """The URL the server prints once it listens; a ClickException when it exits first or
    says nothing for ``timeout`` seconds (its output is read on a thread, so a server that
    hangs silently cannot hang the demo)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert server.stdout is not None
        for line in server.stdout:
            lines.put(line)
        lines.put(None)  # the server closed its output: it exited

    threading.Thread(target=read, name="demo-server-output", daemon=True).start()
    try:
        while (line := lines.get(timeout=timeout)) is not None:
            if "listening on " in line:
                return line.split("listening on ", 1)[1].split()[0]
    except queue.Empty:
        server.kill()
        raise click.ClickException(
            f"the bundled payment server said nothing for {timeout:.0f} s; stopped it"
        ) from None
    raise click.ClickException(
        f"the bundled payment server exited (status {server.wait()}) before it listened"
    )


def finish(process: subprocess.Popen[str]) -> Outcome:
    stdout, stderr = process.communicate(timeout=60)
    try:
        data = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else {}
    except json.JSONDecodeError:
        data = {"unparsed": stdout[-400:]}
    return Outcome(process.returncode, data, stderr[-400:])
