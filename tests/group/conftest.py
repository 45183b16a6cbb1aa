"""Group tests: the in-process app for fast rule tests, a real server process for the
acceptance ones (one per module, to keep the suite quick)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nfcpay.testing.server import InProcessServer, ServerProcess
from tests.support.harness import DATABASES, server_on, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """tests/conftest.py's module server on a test clock (:meth:`ServerProcess.advance`)."""
    with start_server(tmp_path_factory.mktemp("server"), test_clock=True) as process:
        yield process


@pytest.fixture
def app(tmp_path: Path) -> Iterator[InProcessServer]:
    with InProcessServer(tmp_path / "srv") as server:
        yield server


@pytest.fixture(scope="module", params=DATABASES)
def any_db_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A real server process on SQLite and, with NFCPAY_TEST_DATABASE_URL, on PostgreSQL."""
    with server_on(request.param, tmp_path_factory.mktemp("group-db")) as process:
        yield process
