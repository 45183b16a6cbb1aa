"""Server test fixtures: every storage-dependent test runs on SQLite and, when
NFCPAY_TEST_DATABASE_URL is set, again on PostgreSQL in a fresh schema of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nfcpay.testing.server import (
    InProcessServer,
)
from tests.support.harness import DATABASES, Api, Clock, database_url


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for SQLite in the data dir, else a PostgreSQL URL with a fresh schema."""
    with database_url(request.param) as url:
        yield url


@pytest.fixture
def api(tmp_path: Path, db_url: str | None) -> Iterator[Api]:
    with InProcessServer(tmp_path / "server", db_url=db_url) as server:
        clock = Clock()
        server.runtime.clock = clock
        yield Api(server, clock)
