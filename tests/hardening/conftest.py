"""Fixtures for the hardening suite: real ``nfcpay server run`` processes under faults."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from nfcpay.testing.server import postgres_schema
from tests.support.report import section


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    """A fresh schema of its own in the machine's PostgreSQL, dropped afterwards."""
    with postgres_schema(postgres_url) as url:
        yield url


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``figures(line)``: state a measured figure of this run; it is printed in the test's
    output and again in the summary at the end of the session (no ``-s`` needed)."""
    lines = section(request.config, "figures stated by the hardening tests")

    def state(line: str) -> None:
        print(line)
        lines.append(f"{request.node.name}: {line}")

    return state
