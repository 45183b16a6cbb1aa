"""``nfcpay ui`` processes against a real server process, with terminals as in tests/e2e."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any
from urllib.parse import urlsplit

import pytest

from nfcpay.testing.server import ServerProcess
from tests.e2e.conftest import Cli, Done, finish

CARD = ("--number", "4111 1111 1111 1111", "--expiry", "12/39", "--limit", "500,000")


@dataclass
class UiProcess:
    """A running ``nfcpay ui``: ``link`` is the URL it printed, token included."""

    process: Popen[str]
    link: str

    @property
    def base(self) -> str:
        parts = urlsplit(self.link)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def port(self) -> int:
        return int(urlsplit(self.link).port or 0)

    @property
    def token(self) -> str:
        return urlsplit(self.link).query.removeprefix("token=")

    def stop(self) -> Done:
        self.process.send_signal(signal.SIGINT)
        return finish(self.process, timeout=20)


def start_ui(cli: Cli, name: str, *args: str, device: str | None = None) -> UiProcess:
    """Start ``nfcpay ui`` for terminal ``name`` and wait for the link it prints."""
    process = cli.start(name, "ui", *args, device=device)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("{"):
        raise AssertionError(f"nfcpay ui did not start: {line}{finish(process)}")
    data: dict[str, Any] = json.loads(line)
    return UiProcess(process, str(data["url"]))


@pytest.fixture
def cli(tmp_path: Path, server: ServerProcess) -> Iterator[Cli]:
    terminals = Cli(tmp_path, server.url)
    terminals.env["NFCPAY_READER_LOCK_DIR"] = str(tmp_path / "locks")
    yield terminals
    terminals.close()


def owner_with_card(cli: Cli) -> str:
    user_id = cli.init("user", "user")
    done = cli.run("user", "user", "add-card", *CARD)
    assert done.status == 0, done
    return user_id


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
    from tests.ui.browser import chromium

    yield from chromium()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    found = config.stash.get(PAGE_TIMINGS, [])
    if not found:
        return
    terminalreporter.write_sep("-", "pages in headless Chromium (goal: tap to text under 1 s)")
    for what, ms in found:
        terminalreporter.write_line(f"{ms:8.0f} ms  {what}")
