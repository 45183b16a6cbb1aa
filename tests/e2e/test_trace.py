"""``--trace FILE``: a sticker hand-off recorded at the driver seam, secrets masked, and the
trace replayed against a fresh emulated chip (how a counter's trace becomes a test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nfcpay.terminals.home import TerminalHome
from nfcpay.transport.trace import load
from nfcpay.transport.virtual.replay import replay
from tests.support.cli import Cli, finish, owner_with_card

pytestmark = [pytest.mark.nfc_sim]


def usage_auth_held(cli: Cli, name: str) -> str:
    """The usage-auth (hex) of the one grant terminal ``name`` holds."""
    [entry] = TerminalHome(cli.home(name)).items("grants")
    return str(entry["record"]["usage_auth"])


def pieces_in(trace: Path, secret_hex: str) -> int:
    """How many of the frames in ``trace`` hold four bytes in a row of the secret."""
    secret = bytes.fromhex(secret_hex)
    pieces = {secret[i : i + 4] for i in range(len(secret) - 3)}
    _, frames = load(trace)
    return sum(any(p in frame.data for p in pieces) for frame in frames)


@pytest.mark.parametrize("chip", ["acr122u", "pn533", "rcs380"])
def test_a_traced_sticker_hand_off_is_masked_and_replays(
    cli: Cli, tmp_path: Path, chip: str
) -> None:
    owner_with_card(cli)
    target_id = cli.init("target", "target")
    cli.use_virtual_readers(chip, chip)
    device, _ = cli.readers.devices()
    assert cli.run("user", "field", "place", "ntag215", "--field", cli.readers.field).status == 0
    given_trace, taken_trace = tmp_path / "give.jsonl", tmp_path / "take.jsonl"
    given = finish(cli.start("user", "user", "give", "--carrier", "tag", "--to", target_id,
                             "--amount", "3,000", "--timeout", "10", "--trace", str(given_trace),
                             device=device))  # fmt: skip
    assert given.status == 0, given
    taken = finish(cli.start("target", "target", "receive", "--carrier", "tag", "--timeout", "10",
                             "--trace", str(taken_trace), device=device))  # fmt: skip
    assert taken.status == 0, taken

    usage_auth = usage_auth_held(cli, "target")
    header = json.loads(given_trace.read_text().splitlines()[0])
    assert (
        header["redacted"] and header["profile"] == chip and header["tags"][0]["kind"] == "ntag215"
    )
    for trace in (given_trace, taken_trace):
        assert pieces_in(trace, usage_auth) == 0, trace
        assert replay(trace) == [], trace  # masked, checksums refitted: still replays exactly


def test_a_changed_answer_is_reported_and_secrets_are_kept_only_when_asked(
    cli: Cli, tmp_path: Path
) -> None:
    owner_with_card(cli)
    target_id = cli.init("target", "target")
    cli.use_virtual_readers("rcs380", "rcs380")
    device, _ = cli.readers.devices()
    assert cli.run("user", "field", "place", "ntag215", "--field", cli.readers.field).status == 0
    trace = tmp_path / "clear.jsonl"
    given = finish(cli.start("user", "user", "give", "--carrier", "tag", "--to", target_id,
                             "--amount", "3,000", "--timeout", "10", "--trace", str(trace),
                             "--trace-secrets", device=device))  # fmt: skip
    assert given.status == 0, given
    assert "usage-auth values and signatures in clear" in given.stderr
    taken = finish(cli.start("target", "target", "receive", "--carrier", "tag", "--timeout", "10",
                             device=device))  # fmt: skip
    assert taken.status == 0, taken
    assert pieces_in(trace, usage_auth_held(cli, "target")) > 0

    lines = trace.read_text().splitlines()
    last_answer = max(i for i, line in enumerate(lines) if '"dir": "in"' in line)
    answer = json.loads(lines[last_answer])
    answer["frame"] = answer["frame"][:-4] + "0000"
    lines[last_answer] = json.dumps(answer)
    trace.write_text("\n".join(lines) + "\n")
    [mismatch] = replay(trace)
    assert mismatch.expected.hex() == answer["frame"] and mismatch.got is not None


def test_the_loopback_reader_has_no_chip_to_trace(cli: Cli, tmp_path: Path) -> None:
    owner_with_card(cli)
    device, _ = cli.readers.devices()  # loopback
    done = finish(cli.start("user", "user", "give", "--amount", "1,000", "--timeout", "1",
                            "--trace", str(tmp_path / "t.jsonl"), device=device))  # fmt: skip
    assert done.status != 0 and "virtual:CHIP@FIELD" in done.data["message"], done
