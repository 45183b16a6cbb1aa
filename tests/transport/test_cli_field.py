"""`nfcpay field`: start, show, place and remove tags, stop (a real broker process)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from nfcpay.cli import cli
from nfcpay.cli.output import run_guarded


@dataclass
class Result:
    exit_code: int
    output: str


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # a private place for the field

    def invoke(*args: str) -> Result:
        status = run_guarded(cli, list(args))
        out, err = capsys.readouterr()
        return Result(status, out + err)

    yield invoke
    invoke("field", "stop", "--field", "cli-test")


def test_a_tag_is_placed_shown_and_removed(run):
    placed = run("--json", "field", "place", "ntag215", "--field", "cli-test", "--id", "s1")
    assert placed.exit_code == 0, placed.output
    assert json.loads(placed.output) == {"field": "cli-test", "kind": "ntag215", "tag_id": "s1"}
    shown = json.loads(run("--json", "field", "show", "--field", "cli-test").output)
    assert shown["tags"] == [{"id": "s1", "kind": "ntag215"}]
    human = run("field", "show", "--field", "cli-test").output
    assert "s1" in human and "ntag215" in human and "no readers" in human
    assert run("field", "remove", "s1", "--field", "cli-test").exit_code == 0
    assert json.loads(run("--json", "field", "show", "--field", "cli-test").output)["tags"] == []


def test_mistakes_are_usage_errors_that_name_the_thing(run):
    run("field", "start", "--field", "cli-test")
    missing = run("field", "remove", "nope", "--field", "cli-test")
    assert missing.exit_code == 2 and "no tag 'nope'" in missing.output
    run("field", "place", "ntag216", "--field", "cli-test", "--id", "twice")
    taken = run("field", "place", "ntag216", "--field", "cli-test", "--id", "twice")
    assert taken.exit_code == 2, taken.output
    unknown = run("field", "place", "mifare", "--field", "cli-test")
    assert unknown.exit_code == 2 and "ntag215" in unknown.output


def test_a_stopped_field_says_how_to_start_it(run):
    run("field", "start", "--field", "cli-test")
    assert "stopped" in run("field", "stop", "--field", "cli-test").output
    shown = run("field", "show", "--field", "cli-test")
    assert shown.exit_code == 4
    assert "nfcpay field start --field cli-test" in shown.output
