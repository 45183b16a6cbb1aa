"""A yes/no question to the person at this terminal, with a deadline.

Asked only once a tap is over (a tap never waits for a person). No answer in time counts as
no, and so does the end of input: a terminal with nobody at it never says yes by itself.
"""

from __future__ import annotations

import select
import sys
from typing import TextIO

import click


def yes_within(question: str, timeout: float, stream: TextIO | None = None) -> bool | None:
    """True for ``y``/``yes``; False for any other answer or the end of input; None when no
    answer arrives within ``timeout`` seconds. The question goes to stderr."""
    click.echo(f"{question} [y/N, {timeout:.0f} s] ", nl=False, err=True)
    line = _line_within(stream or sys.stdin, timeout)
    if line is None:
        click.echo("", err=True)
        return None
    return line.strip().lower() in {"y", "yes"}


def _line_within(stream: TextIO, timeout: float) -> str | None:
    """The next line of ``stream`` ("" at its end), or None after ``timeout`` seconds."""
    try:
        descriptor = stream.fileno()
    except (AttributeError, OSError, ValueError):  # an in-memory stream: no waiting needed
        return stream.readline()
    ready, _, _ = select.select([descriptor], [], [], timeout)
    return stream.readline() if ready else None
