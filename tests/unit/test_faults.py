"""The NFCPAY_FAULT_LINK_DROP test hook: parsing, off unless enabled, and when it fires."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nfcpay.errors import ConfigError
from nfcpay.transport import faults
from nfcpay.transport.faults import ENV, LinkDrop, parse


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("send:3", LinkDrop("send", 3)),
        ("recv:1", LinkDrop("recv", 1)),
        (" recv:12 ", LinkDrop("recv", 12)),
        ("", None),
        ("   ", None),
    ],
)
def test_parse_accepts_send_or_recv_and_a_positive_index(
    value: str, expected: LinkDrop | None
) -> None:
    assert parse(value) == expected


@pytest.mark.parametrize(
    "value",
    ["send", "send:", "send:0", "recv:-1", "recv:01", "send:1.5", "SEND:1", "drop:2", "send:2x",
     "send:1,recv:2", "send:9999999"],
)  # fmt: skip
def test_parse_rejects_anything_else_naming_the_variable_and_the_form(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(value)
    assert ENV in caught.value.message and "send:N or recv:N" in caught.value.message
    assert repr(value) in caught.value.message


def test_link_drop_prints_as_it_is_written() -> None:
    assert str(LinkDrop("recv", 2)) == "recv:2"


def test_off_installs_nothing() -> None:
    """Zero cost: not enabled, channels keep their own methods and nfcpy is untouched."""
    from nfcpay.transport.llcp import LlcpChannel

    assert faults._failpoint is None
    assert LlcpChannel.send.__module__ == "nfcpay.transport.llcp"
    assert LlcpChannel.receive.__module__ == "nfcpay.transport.llcp"


def test_a_malformed_value_stops_a_command_with_a_config_error() -> None:
    """Read at the command's start: a mistyped fault ends it (exit 6), not a silent run."""
    done = subprocess.run(
        [sys.executable, "-m", "nfcpay", "--json", "--device", "loopback:1", "readers"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, ENV: "send:zero"},
    )  # fmt: skip
    assert done.returncode == 6, done
    assert "send:zero" in done.stdout and ENV in done.stdout


_PROBE = """
import json, sys
import nfc.clf
from nfcpay.errors import LinkLost
from nfcpay.transport import faults
from nfcpay.transport.channel import Channel

class Probe(Channel):
    carrier, role = "llcp", "poll"
    def __init__(self):
        self.log = []
    def send(self, message, timeout=3.0):
        self.log.append("sent " + message.decode())
    def receive(self, timeout):
        self.log.append("took")
        return b"m"

def silent():
    frontend = object.__new__(nfc.clf.ContactlessFrontend)
    try:
        frontend.exchange(b"frame", 0.01)
    except nfc.clf.TimeoutError:
        return True
    except Exception:
        return False  # the real exchange ran (no device): not silenced
    return False

faults.enable(faults.parse(sys.argv[1]))  # what the CLI does when the variable is set
channel, events = Probe(), []
for step in sys.argv[2:]:
    if step == "tap":  # a new tap begins: the reader polls again
        try:
            object.__new__(nfc.clf.ContactlessFrontend).sense()
        except Exception:
            pass  # no device behind it; only the start of the poll matters
        events.append([step, "ok", silent()])
        continue
    try:
        channel.send(step.encode()) if step.startswith("s") else channel.receive(1)
        events.append([step, "ok", silent()])
    except LinkLost as exc:
        events.append([step, "dropped", silent()])
print(json.dumps({"events": events, "log": channel.log}))
"""


def probe(fault: str, *steps: str) -> dict[str, list]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, fault, *steps],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return dict(json.loads(done.stdout))


def test_send_n_drops_before_the_nth_send_once_and_silences_the_reader_until_a_tap() -> None:
    result = probe("send:2", "s1", "r", "s2", "s3", "tap", "s4")
    assert result["events"] == [
        ["s1", "ok", False], ["r", "ok", False], ["s2", "dropped", True], ["s3", "ok", True],
        ["tap", "ok", False], ["s4", "ok", False],
    ]  # fmt: skip
    assert result["log"] == ["sent s1", "took", "sent s3", "sent s4"]  # s2 never left


def test_recv_n_drops_after_the_nth_message_arrived() -> None:
    result = probe("recv:2", "r", "s1", "r", "r")
    assert [e[:2] for e in result["events"]] == [
        ["r", "ok"], ["s1", "ok"], ["r", "dropped"], ["r", "ok"]
    ]  # fmt: skip
    assert result["log"] == ["took", "sent s1", "took", "took"]  # taken, then discarded
