"""The demo's stage gives up on a bundled server that never says where it listens."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from nfcpay.cli.demo.stage import _listening_url


def server(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_a_silent_server_is_stopped_after_the_timeout() -> None:
    with server("import time; time.sleep(60)") as silent:
        with pytest.raises(click.ClickException, match="said nothing for 1 s"):
            _listening_url(silent, 1.0)
        assert silent.wait(10) != 0  # killed, not left running


def test_a_server_that_exits_first_is_named_with_its_status() -> None:
    with (
        server("print('starting'); raise SystemExit(3)") as exiting,
        pytest.raises(click.ClickException, match=r"exited \(status 3\)"),
    ):
        _listening_url(exiting, 30.0)


def test_the_url_is_read_from_the_listening_line() -> None:
    with server("print('nfcpay server listening on http://127.0.0.1:9 (sqlite)')") as printing:
        assert _listening_url(printing, 30.0) == "http://127.0.0.1:9"
