"""Fixtures every test directory shares. Helpers that test modules import live in tests/support/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nfcpay.testing.server import ServerProcess
from tests.support.cli import Cli
from tests.support.harness import start_server
from tests.support.report import print_sections

#: Variables that would make a test depend on the developer's own set-up.
_ISOLATED_ENV = ("NFCPAY_HOME", "NFCPAY_SERVER", "NFCPAY_DEVICE", "NFCPAY_JSON")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in _ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture
def postgres_url() -> str:
    """The PostgreSQL URL for storage tests; the test is skipped where none is configured."""
    url = os.environ.get("NFCPAY_TEST_DATABASE_URL")
    if not url:
        pytest.skip("NFCPAY_TEST_DATABASE_URL is not set (no PostgreSQL for this run)")
    return url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real ``nfcpay server run`` process (SQLite) shared by a test module."""
    with start_server(tmp_path_factory.mktemp("server")) as process:
        yield process


@pytest.fixture
def cli(tmp_path: Path, server: ServerProcess) -> Iterator[Cli]:
    """Terminal processes with homes under this test's directory, on the module's server."""
    terminals = Cli(tmp_path, server.url)
    yield terminals
    terminals.close()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The figures tests stated about this run (:mod:`tests.support.report`)."""
    print_sections(terminalreporter, config)
