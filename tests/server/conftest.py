"""Server test fixtures: every storage-dependent test runs on SQLite and, when
NFCPAY_TEST_DATABASE_URL is set, again on PostgreSQL in a fresh schema of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nfcpay.testing.server import (
    InProcessServer,
    postgres_schema,
)
from tests.support.harness import Api, Clock


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for SQLite in the data dir, else a PostgreSQL URL with a fresh schema."""
    if request.param == "sqlite":
        yield None
        return
    base = os.environ.get("NFCPAY_TEST_DATABASE_URL")
    if not base:
        pytest.skip("NFCPAY_TEST_DATABASE_URL is not set (no PostgreSQL for this run)")
    with postgres_schema(base) as url:
        yield url


@pytest.fixture
def api(tmp_path: Path, db_url: str | None) -> Iterator[Api]:
    with InProcessServer(tmp_path / "server", db_url=db_url) as server:
        clock = Clock()
        server.runtime.clock = clock
        yield Api(server, clock)
