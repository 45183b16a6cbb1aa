"""The HTTP transport of a real server process: keep-alive requests answer without stalls.

uvicorn writes a response's headers and body in two ``send()`` calls. Unless the accepted
socket has TCP_NODELAY, Nagle's algorithm holds the body until the client ACKs the headers,
and the client's delayed ACK makes that ~40 ms on every request of a kept-alive connection.
"""

from __future__ import annotations

import statistics
import time

from tests.server.acceptance.conftest import Harness

#: A Nagle/delayed-ACK stall is ~40 ms on Linux; a healthy local round trip is a few ms.
STALL_S = 0.030


def test_keep_alive_requests_do_not_stall(harness: Harness) -> None:
    owner = harness.terminal("user")
    timings = []
    for _ in range(9):
        start = time.perf_counter()
        owner.client.me()
        timings.append(time.perf_counter() - start)
    assert statistics.median(timings) < STALL_S, [round(t * 1000, 1) for t in timings]
