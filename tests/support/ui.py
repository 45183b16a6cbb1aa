"""`nfcpay ui` as a process of its own: start one for a terminal home and read its link."""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from subprocess import Popen
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.support.cli import Cli, Done, finish


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


@contextlib.contextmanager
def signed_in(page: UiProcess) -> Iterator[httpx.Client]:
    """A client that opened the printed link (and so holds the page's cookie)."""
    with httpx.Client(base_url=page.base) as client:
        answer = client.get(page.link)
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        assert "HttpOnly" in answer.headers["set-cookie"]
        assert "SameSite=Strict" in answer.headers["set-cookie"]
        yield client


def csrf_of(html: str) -> str:
    return html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
