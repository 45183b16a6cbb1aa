"""Figures tests state about their run, printed together at its end (no ``-s`` needed).

A test directory's fixture appends lines to a :func:`section`; the root conftest's
``pytest_terminal_summary`` prints every section that got any (:func:`print_sections`).
"""

from __future__ import annotations

from typing import Any

import pytest

_SECTIONS = pytest.StashKey[dict[str, list[str]]]()


def section(config: pytest.Config, title: str) -> list[str]:
    """The lines printed under ``title`` at the end of the run: append to it."""
    return config.stash.setdefault(_SECTIONS, {}).setdefault(title, [])


def milliseconds(ms: float, what: str) -> str:
    """One timing line, aligned with the others."""
    return f"{ms:8.0f} ms  {what}"


def print_sections(terminalreporter: Any, config: pytest.Config) -> None:
    for title, lines in config.stash.get(_SECTIONS, {}).items():
        if lines:
            terminalreporter.write_sep("-", title)
            for line in lines:
                terminalreporter.write_line(line)
