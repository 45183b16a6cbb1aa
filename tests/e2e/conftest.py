"""Terminals as separate ``nfcpay`` processes against a real server process, over loopback."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest

from tests.support.cli import Done, finish, interrupt
from tests.support.report import milliseconds, section

#: A process must end this soon after Ctrl-C: long enough that a slow machine never fails,
#: short enough that a hang does (people expect the prompt back in well under a second).
INTERRUPT_BOUND = 10.0


@pytest.fixture
def interrupt_and_time(request: pytest.FixtureRequest) -> Callable[..., Done]:
    """Send Ctrl-C to a process, wait for its exit, and record how long it took."""
    timings = section(request.config, "Ctrl-C: signal to exit")

    def run(process: subprocess.Popen[str], state: str) -> Done:
        started = time.monotonic()
        interrupt(process)
        done = finish(process, timeout=INTERRUPT_BOUND)
        timings.append(milliseconds((time.monotonic() - started) * 1000, state))
        return done

    return run
