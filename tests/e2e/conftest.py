"""Terminals as separate ``nfcpay`` processes against a real server process, over loopback."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.cli import Done, finish, interrupt

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
