"""`nfcpay selftest` over virtual readers: two readers held together, or one and a tag."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from nfcpay.cli import cli
from nfcpay.cli.output import run_guarded


@dataclass
class Result:
    status: int
    data: dict


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # a field of this test's own

    def invoke(*args: str) -> Result:
        status = run_guarded(cli, ["--json", *args])
        out, _ = capsys.readouterr()
        return Result(status, json.loads(out.strip().splitlines()[-1]) if out.strip() else {})

    yield invoke
    invoke("field", "stop", "--field", "st")


def test_two_readers_link_both_ways_when_both_can_listen(run):
    done = run("--device", "virtual:pn533@st", "selftest", "--other", "virtual:rcs380@st")
    assert done.status == 0, done
    names = [step["name"] for step in done.data["steps"]]
    assert names == [
        "tap and 600 bytes each way (SCM SCL3711 / NXP PN533 waits, Sony RC-S380 taps)",
        "tap and 600 bytes each way (Sony RC-S380 waits, SCM SCL3711 / NXP PN533 taps)",
    ]
    assert all(step["ms"] > 0 and "link-up" in step["detail"] for step in done.data["steps"])


def test_an_acr122u_taps_a_reader_that_listens(run):
    done = run("--device", "virtual:rcs380@st", "selftest", "--other", "virtual:acr122u@st")
    assert done.status == 0, done
    assert len(done.data["steps"]) == 1  # the ACR122U cannot be the waiting side


def test_two_acr122us_fail_with_the_way_out(run):
    done = run(
        "--device", "virtual:acr122u@st", "selftest", "--other", "virtual:acr122u@st",
        "--timeout", "1",
    )  # fmt: skip
    assert done.status == 4
    [step] = done.data["steps"]
    assert not step["ok"] and "--carrier tag" in step["fix"]


def test_one_reader_writes_reads_and_wipes_a_tag(run):
    assert run("field", "place", "ntag215", "--field", "st").status == 0
    done = run("--device", "virtual:acr122u@st", "selftest")
    assert done.status == 0, done
    assert [step["ok"] for step in done.data["steps"]] == [True, True]


def test_one_reader_and_no_tag_says_what_to_do(run):
    done = run("--device", "virtual:acr122u@st", "selftest", "--timeout", "0.5")
    assert done.status == 4
    [step] = done.data["steps"]  # nothing to read after a failed write
    assert step["name"] == "write a message to the tag" and step["fix"]
