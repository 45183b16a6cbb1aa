"""``nfcpay server run --workers N`` (nfcpay.server.workers): N real server processes share
one port on PostgreSQL and approve payments; Ctrl-C (or SIGTERM) on the parent stops them
all; a worker that dies takes the server down with a non-zero status; a parent killed
outright leaves no worker behind; SQLite refuses the option."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nfcpay.testing.server import ServerProcess, payment_scene
from tests.support.cli import wait_for
from tests.support.harness import server_on

pytestmark = pytest.mark.postgres

#: Far longer than a worker needs to stop; only a hang reaches it.
STOP_BOUND_S = 20.0


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[ServerProcess, list[int]]]:
    with server_on("postgresql", tmp_path / "server", args=["--workers", "2"]) as server:
        wait_for(lambda: len(server.processes()) == 3, STOP_BOUND_S, "two workers")
        workers = server.processes()[1:]
        yield server, workers
        for pid in workers:  # whatever the test did, none may outlive it
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_two_workers_approve_payments_and_stop_on_ctrl_c(
    two_workers: tuple[ServerProcess, list[int]],
) -> None:
    server, workers = two_workers
    assert "2 worker processes" in server.log()
    scene = payment_scene(server.url, amount_cap=10_000, max_uses=20)
    for _ in range(10):  # over new connections: the kernel hands them to either worker
        assert scene.pay(100)["status"] == "approved"
    assert server.audit() == []
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(STOP_BOUND_S) == 130  # as a one-process server on Ctrl-C
    assert not any(alive(pid) for pid in workers)
    assert "Traceback" not in server.log()
    assert server.log().rstrip().endswith("Interrupted.")


def test_sigterm_stops_every_worker(two_workers: tuple[ServerProcess, list[int]]) -> None:
    server, workers = two_workers
    server.process.terminate()
    assert server.process.wait(STOP_BOUND_S) == 0
    assert not any(alive(pid) for pid in workers)
    assert "Traceback" not in server.log()


def test_a_worker_that_dies_stops_the_server(
    two_workers: tuple[ServerProcess, list[int]],
) -> None:
    server, workers = two_workers
    os.kill(workers[0], signal.SIGKILL)
    assert server.process.wait(STOP_BOUND_S) == 1
    wait_for(lambda: not alive(workers[1]), STOP_BOUND_S, "the other worker to stop")
    assert f"worker {workers[0]} ended on its own (killed by SIGKILL)" in server.log()


def test_a_killed_parent_leaves_no_worker_holding_the_port(
    two_workers: tuple[ServerProcess, list[int]],
) -> None:
    server, workers = two_workers
    server.process.kill()
    server.process.wait(STOP_BOUND_S)
    wait_for(lambda: not any(alive(pid) for pid in workers), STOP_BOUND_S, "the workers to end")


@pytest.mark.parametrize("workers", ["2"])
def test_sqlite_refuses_workers(tmp_path: Path, workers: str) -> None:
    command = [sys.executable, "-m", "nfcpay", "server", "run", "--data-dir", str(tmp_path)]
    done = subprocess.run(
        [*command, "--port", "0", "--workers", workers],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("NFCPAY_SERVER")},
    )
    assert done.returncode == 2, done
    assert "--workers needs --db postgresql://" in done.stderr
