"""What the end-to-end benchmarks share: a free loopback port and a real server process."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """Start `nfcpay server run` on a free port; return the process and its URL."""
    command = [sys.executable, "-m", "nfcpay", "server", "run", "--data-dir", str(data_dir)]
    process = subprocess.Popen([*command, "--port", "0"], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if "listening on " in line:
            return process, line.split("listening on ", 1)[1].split()[0]
    raise SystemExit("server did not start")
