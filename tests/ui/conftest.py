"""``nfcpay ui`` processes against a real server process, with terminals as in tests/e2e."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.report import milliseconds, section


@pytest.fixture
def timings(request: pytest.FixtureRequest) -> Callable[[str, float], None]:
    """``timings(what, ms)``: a time the page tests measured, printed at the end of the run."""
    lines = section(request.config, "pages in headless Chromium (goal: tap to text under 1 s)")
    return lambda what, ms: lines.append(milliseconds(ms, what))


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the page tests keep their screenshots (the run's artifacts)."""
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def browser() -> Iterator[Any]:
    from tests.support.browser import chromium

    yield from chromium()
