"""`terminal init --category …` and `merchant categories [set]` against a real server process:
the categories a merchant registers, changes and reads, and the default purpose it charges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nfcpay.cli import cli
from nfcpay.cli.output import run_guarded
from nfcpay.terminals.account import connect
from nfcpay.terminals.home import TerminalHome
from nfcpay.terminals.merchant import categories
from nfcpay.testing.server import ServerProcess, register_terminal


def run_json(capsys: pytest.CaptureFixture[str], home: Path, url: str, *args: str) -> Any:
    status = run_guarded(cli, ["--json", "--home", str(home), "--server", url, *args])
    out, _ = capsys.readouterr()
    return status, json.loads(out)


def test_a_merchant_registers_changes_and_reads_its_categories(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "shop"
    init = ("terminal", "init", "--role", "merchant", "--label", "Shop")
    status, made = run_json(capsys, home, server.url, *init, "--category", "5999,5812")
    assert status == 0 and made["categories"] == ["5999", "5812"]

    status, changed = run_json(capsys, home, server.url, "merchant", "categories", "set", "5812")
    assert status == 0 and changed["categories"] == ["5812"]
    assert [(c["old"], c["new"]) for c in changed["changes"]] == [
        ([], ["5999", "5812"]),
        (["5999", "5812"], ["5812"]),
    ]
    assert {c["terminal_id"] for c in changed["changes"]} == {made["terminal_id"]}
    # The home keeps the new set: the next charge's default purpose is the new primary one.
    assert TerminalHome(home).identity().categories == ["5812"]

    status, shown = run_json(capsys, home, server.url, "merchant", "categories")
    assert (status, shown) == (0, changed)


def test_a_home_from_before_several_categories_asks_the_server_once(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = TerminalHome(tmp_path / "shop")
    init = ("terminal", "init", "--role", "merchant", "--label", "Shop", "--category", "5814")
    assert run_json(capsys, home.path, server.url, *init)[0] == 0
    data = json.loads((home.path / "terminal.json").read_text())
    del data["categories"]  # as nfcpay before several categories wrote it
    (home.path / "terminal.json").write_text(json.dumps(data))
    with connect(home) as client:
        assert categories(home, client) == ["5814"]
    assert home.identity().categories == ["5814"]


def test_only_a_merchant_terminal_has_categories(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "user"
    assert (
        run_json(capsys, home, server.url, "terminal", "init", "--role", "user", "--label", "u")[0]
        == 0
    )
    status, refused = run_json(capsys, home, server.url, "merchant", "categories", "set", "5812")
    assert status == 6 and refused["error"] == "config_error"
    assert register_terminal(server.url, "user").info.get("merchant") is None


def test_charging_for_a_purpose_the_merchant_did_not_register_is_refused_before_the_tap(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "shop"
    init = ("terminal", "init", "--role", "merchant", "--label", "Shop", "--category", "5999")
    assert run_json(capsys, home, server.url, *init)[0] == 0
    status, refused = run_json(
        capsys, home, server.url, "merchant", "charge", "--amount", "5", "--purpose", "5812"
    )
    assert status == 2 and refused["field"] == "--purpose"
    assert "purpose 5812 is not one of this merchant's categories (5999)" in refused["message"]
