"""Readers for transport tests: a loopback device path on a port, link-drop steps, and
readers opened where the test's own processes look."""

from __future__ import annotations

import os
from typing import Any

from nfcpay.transport.reader import Reader, open_reader
from nfcpay.transport.rundir import runtime_dir_in


def loop(port: int, as_profile: str | None = None) -> str:
    """The loopback reader on ``port``, posing as the reader of ``as_profile`` if given."""
    return f"loopback:{port}" + (f"?as={as_profile}" if as_profile else "")


def steps(*actions: str) -> list[str]:
    """The peer's ``--step`` options, one per action, in order."""
    return [arg for action in actions for arg in ("--step", action)]


def open_reader_here(device: str, **options: Any) -> Reader:
    """nfcpay's ``open_reader`` in the runtime directory this test named in its environment
    (``XDG_RUNTIME_DIR``), where the processes it starts find the same virtual fields."""
    return open_reader(device, runtime_dir=runtime_dir_in(os.environ), **options)
