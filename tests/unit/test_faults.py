"""The NFCPAY_FAULT_LINK_DROP test hook: parsing, and that it stays off unless set."""

from __future__ import annotations

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


def test_unset_installs_nothing() -> None:
    """Zero cost: without the variable channels keep their own methods and nfcpy is untouched."""
    assert os.environ.get(ENV) is None
    from nfcpay.transport.llcp import LlcpChannel

    assert faults._FAILPOINT is None
    assert LlcpChannel.send.__module__ == "nfcpay.transport.llcp"
    assert LlcpChannel.receive.__module__ == "nfcpay.transport.llcp"


def test_a_malformed_value_stops_a_command_with_a_config_error() -> None:
    """Read once at import: a mistyped fault ends the command (exit 6), not a silent run."""
    done = subprocess.run(
        [sys.executable, "-m", "nfcpay", "--json", "--device", "loopback:1", "readers"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, ENV: "send:zero"},
    )  # fmt: skip
    assert done.returncode == 6, done
    assert "send:zero" in done.stdout and ENV in done.stdout
