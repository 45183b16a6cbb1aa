"""Group tests: the in-process app for fast rule tests, a real server process for the
acceptance ones (one per module, to keep the suite quick)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nfcpay.testing.server import InProcessServer, ServerProcess, postgres_schema, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """tests/conftest.py's module server on a test clock (:meth:`ServerProcess.advance`)."""
    with start_server(tmp_path_factory.mktemp("server"), test_clock=True) as process:
        yield process


@pytest.fixture
def app(tmp_path: Path) -> Iterator[InProcessServer]:
    with InProcessServer(tmp_path / "srv") as server:
        yield server


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def any_db_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A real server process on SQLite and, with NFCPAY_TEST_DATABASE_URL, on PostgreSQL."""
    data_dir = tmp_path_factory.mktemp("group-db")
    if request.param == "sqlite":
        with start_server(data_dir) as process:
            yield process
        return
    base = os.environ.get("NFCPAY_TEST_DATABASE_URL")
    if not base:
        pytest.skip("NFCPAY_TEST_DATABASE_URL is not set (no PostgreSQL for this run)")
    with postgres_schema(base) as url, start_server(data_dir, db_url=url) as process:
        yield process
