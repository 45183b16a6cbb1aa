"""The HTTP transport of ``nfcpay server run``: its kept-alive connections have TCP_NODELAY.

uvicorn writes a response's headers and body in two ``send()`` calls. Unless the accepted
socket has TCP_NODELAY, Nagle's algorithm holds the body until the client ACKs the headers,
and the client's delayed ACK makes that ~40 ms on every request of a kept-alive connection.

The test checks the cause, not the stall: it runs the real ``server run`` command (in a
thread, to see uvicorn's connections) and reads TCP_NODELAY on the server's end of a
kept-alive connection. Once on the loop the command picks (uvloop, which sets the option
itself) and once on asyncio, as where uvloop is not installed: asyncio sets it only on
sockets made with proto=IPPROTO_TCP, which is why the command listens on ``_listen``'s
socket. The round trip itself is a benchmark's to measure (scripts/bench_server.py, p50).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from nfcpay.cli.output import CliContext
from nfcpay.cli.server import run

START_TIMEOUT_S = 30.0


@contextmanager
def _serving(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[uvicorn.Server]:
    """``nfcpay server run --port 0`` in a thread; yields its uvicorn server once started."""
    started: list[uvicorn.Server] = []

    class Recorded(uvicorn.Server):
        def __init__(self, config: uvicorn.Config) -> None:
            super().__init__(config)
            started.append(self)

    monkeypatch.setattr(uvicorn, "Server", Recorded)
    failures: list[BaseException] = []

    def serve() -> None:
        obj = CliContext(home=data_dir, server_url=None, device=None, as_json=False, verbose=0)
        args = ["--data-dir", str(data_dir), "--port", "0"]
        try:
            with run.make_context("run", args, obj=obj) as ctx:
                run.invoke(ctx)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=serve, name="nfcpay-server-run", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (started and started[0].started):  # a thread starting, not time passing
        assert thread.is_alive() and time.monotonic() < deadline, failures
        time.sleep(0.01)
    try:
        yield started[0]
    finally:
        started[0].should_exit = True
        thread.join(START_TIMEOUT_S)
    assert not thread.is_alive() and failures == [], failures


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_kept_alive_connections_have_tcp_nodelay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loop: str
) -> None:
    for name in [name for name in os.environ if name.startswith("NFCPAY_SERVER")]:
        monkeypatch.delenv(name)  # the command reads its settings from the environment
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    else:
        monkeypatch.setitem(sys.modules, "uvloop", None)  # uvicorn's "auto" picks asyncio
    with _serving(tmp_path / "srv", monkeypatch) as server:
        (host, port), *_ = [s.getsockname() for s in server.servers[0].sockets]
        with httpx.Client(base_url=f"http://{host}:{port}") as http:
            for _ in range(3):
                assert http.get("/v1/health").status_code == 200
            (connection,) = server.server_state.connections  # one, kept alive
            transport = connection.transport
            assert type(transport).__module__.partition(".")[0] == loop
            accepted = transport.get_extra_info("socket")
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
