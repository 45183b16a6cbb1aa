"""Loopback links for transport tests: a device path on a port, and link-drop steps."""

from __future__ import annotations


def loop(port: int, as_profile: str | None = None) -> str:
    """The loopback reader on ``port``, posing as the reader of ``as_profile`` if given."""
    return f"loopback:{port}" + (f"?as={as_profile}" if as_profile else "")


def steps(*actions: str) -> list[str]:
    """The peer's ``--step`` options, one per action, in order."""
    return [arg for action in actions for arg in ("--step", action)]
