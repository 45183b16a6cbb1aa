"""The role commands' contract without a reader: statuses, --json errors, help text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nfcpay.cli import cli
from nfcpay.cli.output import run_guarded


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = run_guarded(cli, list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_every_role_command_is_registered(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--help")
    assert status == 0
    for name in ("terminal", "user", "target", "merchant", "demo"):
        assert f"  {name} " in out


def test_charge_help_documents_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "merchant", "charge", "--help")
    assert status == 0
    flat = " ".join(out.split())
    assert "3 payment declined" in flat and "--timeout" in flat and "--listen / --poll" in flat


def test_no_terminal_in_home_is_a_config_error_in_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "--json", "--home", str(tmp_path), "terminal", "show")
    assert status == 6
    assert json.loads(out)["error"] == "config_error"


def test_init_without_a_server_says_how_to_name_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(
        capsys, "--home", str(tmp_path), "terminal", "init", "--role", "user", "--label", "x"
    )
    assert status == 6 and "--server" in err
    assert not (tmp_path / "terminal.key").exists()


def test_unreadable_amount_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(
        capsys, "--home", str(tmp_path), "merchant", "charge", "--amount", "12.345.6"
    )
    assert status == 2 and "amount" in err
