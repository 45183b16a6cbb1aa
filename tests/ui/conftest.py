"""``nfcpay ui`` processes against a real server process, with terminals as in tests/e2e."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CARD = ("--number", "4111 1111 1111 1111", "--expiry", "12/39", "--limit", "500,000")


#: (what was timed, milliseconds) of this run's page tests, printed at its end.
PAGE_TIMINGS = pytest.StashKey[list[tuple[str, float]]]()


@pytest.fixture
def timings(request: pytest.FixtureRequest) -> list[tuple[str, float]]:
    return request.config.stash.setdefault(PAGE_TIMINGS, [])


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the page tests keep their screenshots (the run's artifacts)."""
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def browser() -> Iterator[Any]:
    from tests.support.browser import chromium

    yield from chromium()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    found = config.stash.get(PAGE_TIMINGS, [])
    if not found:
        return
    terminalreporter.write_sep("-", "pages in headless Chromium (goal: tap to text under 1 s)")
    for what, ms in found:
        terminalreporter.write_line(f"{ms:8.0f} ms  {what}")
