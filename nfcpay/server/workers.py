"""Serving from several worker processes that share one listening socket (pre-fork).

One server process is bound by one event loop and the GIL: about one core, however many the
machine has. ``nfcpay server run --workers N`` forks N processes after the socket is bound;
the kernel spreads the connections among them, and everything they must agree on is in the
database (request nonces, idempotency keys, row locks), so any worker may answer any
request. What stays per process: the rate limits' buckets (a terminal gets up
to N times its budget) and the caches of what never changes (terminal keys, merchants).

The parent only supervises: Ctrl-C or SIGTERM reach it and it passes the signal on once to
each worker (each in a process group of its own, so a terminal's Ctrl-C does not reach them
twice), then waits for them to finish their requests. A worker that dies while the others
serve stops them all, and the parent exits non-zero: a half-strength server that looks whole
helps nobody, and a supervisor (systemd, a container runtime) restarts the whole. A parent
that is killed outright takes its workers with it (Linux: ``PR_SET_PDEATHSIG``).

On SQLite the workers would take turns at the one write lock, each waiting in SQLite's busy
handler: measured, no more approvals per second and a p99 three times longer, so
``--workers`` needs PostgreSQL.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

#: prctl(2) option: the signal a process gets when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1
#: The signals the parent passes on to its workers.
_FORWARDED = (signal.SIGINT, signal.SIGTERM)


def serve_in_workers(count: int, serve: Callable[[], None]) -> int:
    """Fork ``count`` workers that each call ``serve`` (which returns when its server has
    shut down), supervise them, and return the exit status for the parent: 0 after SIGTERM,
    1 when a worker ended on its own; after Ctrl-C (SIGINT), once the workers have ended,
    raise KeyboardInterrupt as a one-process server does.

    Call it before the process starts any thread: a forked child has only the thread that
    forked, and locks other threads held stay held in it."""
    if threading.active_count() != 1:
        raise RuntimeError("workers are forked before any thread starts")
    workers: set[int] = set()
    parent = os.getpid()
    stopping = False
    interrupted = False

    def pass_on(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping, interrupted
        if stopping:
            return
        stopping = True
        interrupted = signum == signal.SIGINT
        _signal_all(workers, signum)

    # Before forking, so no signal finds the parent without them; each worker resets them.
    previous = {signum: signal.signal(signum, pass_on) for signum in _FORWARDED}
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os._exit(_worker(serve, parent))
        workers.add(pid)
    status = 0
    try:
        while workers:
            pid, code = os.wait()
            workers.discard(pid)
            if stopping:
                continue
            status = 1
            log.error(
                "worker %d ended on its own (%s); stopping the other workers",
                pid,
                _describe(code),
            )
            stopping = True
            _signal_all(workers, signal.SIGTERM)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if interrupted:  # as a one-process server ends on Ctrl-C, once every worker has
        raise KeyboardInterrupt
    return status


def _worker(serve: Callable[[], None], parent: int) -> int:
    os.setpgid(0, 0)  # the parent alone passes signals on: a terminal's Ctrl-C comes once
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _end_with(parent)
    try:
        serve()
    except KeyboardInterrupt:  # uvicorn raises the SIGINT again once it has shut down
        return 0
    except BaseException:
        traceback.print_exc(file=sys.stderr)
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


def _end_with(parent: int) -> None:
    """Have the kernel send this worker SIGTERM when the parent dies, however it dies (a
    SIGKILL'd parent cannot pass anything on, and orphaned workers would hold the port)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the parent's own forwarding is all
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _signal_all(workers: set[int], signum: int) -> None:
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):  # it ended: os.wait collects it
            os.kill(pid, signum)


def _describe(code: int) -> str:
    if os.WIFSIGNALED(code):
        return f"killed by {signal.Signals(os.WTERMSIG(code)).name}"
    return f"exit status {os.waitstatus_to_exitcode(code)}"
