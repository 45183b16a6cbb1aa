"""``nfcpay ndef``: encode by options or JSON, decode files, hex and stdin, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nfcpay.cli import cli
from nfcpay.cli.output import EXIT_NFC, EXIT_USAGE, run_guarded
from nfcpay.records import GrantRecord, MeansRecord, decode_one, encode_message
from nfcpay.records.samples import sample_records

AUTH_HEX = "ab" * 32
GRANT_ARGS = [
    "ndef", "encode", "grant",
    "--grant-id", "g_3fz7q2m4k9xw6a5b",
    "--virtual-card-number", "9900770123456789",
    "--issuing-terminal", "t_u4h2k8m3q7x5w9b6",
    "--allowed-terminal", "t_k7x2m4q9w3b5n8c6",
    "--usage-auth", AUTH_HEX,
    "--currency", "KRW",
    "--amount-cap", "50,000",
    "--remaining-amount", "50000",
    "--max-uses", "3",
    "--valid-until", "2026-12-31T23:59:59Z",
    "--purpose", "5812", "--purpose", "5814",
]  # fmt: skip


def invoke(args: list[str], stdin: str | bytes | None = None) -> tuple[int, str, str]:
    """Run the CLI as ``nfcpay`` does (errors → one line and an exit status)."""
    runner = CliRunner()
    with runner.isolation(input=stdin) as (out, err, _):
        code = run_guarded(cli, args)
    return code, out.getvalue().decode(), err.getvalue().decode()


def test_encode_grant_from_options() -> None:
    result = CliRunner().invoke(cli, GRANT_ARGS)
    assert result.exit_code == 0, result.output
    grant = decode_one(bytes.fromhex(result.output.strip()), GrantRecord)
    assert grant.amount_cap == 50_000 and grant.purposes == ("5812", "5814")
    assert grant.usage_auth == bytes.fromhex(AUTH_HEX) and grant.max_uses == 3


def test_amounts_are_read_in_the_record_currency() -> None:
    g = "g_abc:12.50:" + "cd" * 32
    code, out, _ = invoke([
        "ndef", "encode", "means", "--currency", "USD", "--presenting-terminal", "t_abc",
        "--grant", g, "--grant", "g_def:1:" + "cd" * 32, "--signature", "ee" * 64,
    ])  # fmt: skip
    assert code == 0
    means = decode_one(bytes.fromhex(out.strip()), MeansRecord)
    assert [share.amount for share in means.grants] == [1250, 100]


def test_encode_from_json_with_option_override(tmp_path: Path) -> None:
    fields = sample_records()["challenge"].to_json(reveal=True)
    path = tmp_path / "challenge.json"
    path.write_text(json.dumps({"type": "challenge", **fields}))
    code, out, _ = invoke(["ndef", "encode", "challenge", "--from-json", str(path)])
    assert code == 0
    assert bytes.fromhex(out.strip()) == encode_message([sample_records()["challenge"]])
    code, out, _ = invoke(
        ["ndef", "encode", "challenge", "--from-json", "-", "--amount", "9,000", "--json"],
        stdin=json.dumps(fields),
    )
    assert code == 0
    data = json.loads(out)
    assert data["type"] == "challenge" and data["size"] == len(bytes.fromhex(data["hex"]))
    assert decode_one(bytes.fromhex(data["hex"])).amount == 9000  # type: ignore[attr-defined]


def test_decode_shows_amounts_and_never_whole_secrets() -> None:
    octets = encode_message([sample_records()["grant"], sample_records()["means"]])
    code, out, _ = invoke(["ndef", "decode", octets.hex()])
    assert code == 0
    assert "nfcpay.org:grant  (171 bytes)" in out
    assert "50,000 KRW" in out and "12,000 KRW" in out
    assert "0001…(32 bytes)" in out and "0000…(64 bytes)" in out
    assert bytes(range(32)).hex() not in out and bytes(64).hex() not in out


def test_decode_json_from_file_and_stdin(tmp_path: Path) -> None:
    octets = encode_message([sample_records()["grant"]])
    (tmp_path / "grant.bin").write_bytes(octets)
    (tmp_path / "grant.hex").write_text(octets.hex() + "\n")
    sources = [(str(tmp_path / "grant.bin"), None), (str(tmp_path / "grant.hex"), None)]
    for source, stdin in [*sources, ("-", octets)]:
        code, out, _ = invoke(["--json", "ndef", "decode", source, "--expect", "grant"], stdin)
        assert code == 0
        data = json.loads(out)
        (record,) = data["records"]
        assert data["size"] == len(octets) and record["type"] == "grant"
        assert record["amount_cap"] == 50_000 and record["usage_auth"] == "0001…(32 bytes)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ndef", "decode", "zz"], "'zz' is neither hex nor a readable file"),
        (["ndef", "decode", "d4"], "malformed NDEF message"),
        (["ndef", "decode", "abc"], "not whole bytes of hex"),
        (["ndef", "decode", encode_message([sample_records()["ack"]]).hex(), "--expect", "grant"],
         "record 1: expected grant, got ack"),
        (["ndef", "encode", "ack", "--no-accepted"], "ack: a refusal needs a code"),
        (["ndef", "encode", "split", "--bill-id", "b_1"], "split is missing collector_terminal"),
        (["ndef", "encode", "hello", "--terminal-id", "t_1", "--role", "user",
          "--key-fingerprint", "xyz"], "hello.key_fingerprint is not hex"),
        (["ndef", "encode", "split", "--amount", "12.5"], "give --currency to read amounts"),
        (["ndef", "encode", "challenge", "--currency", "KRW", "--amount", "12.5"],
         "KRW has no minor unit"),
        (["ndef", "encode", "grant", "--valid-until", "tomorrow"], "not an ISO 8601 time"),
        (["ndef", "encode", "means", "--currency", "KRW", "--grant", "g_1:100"],
         "means.grants must be GRANT_ID:AMOUNT:USAGE_AUTH, got 'g_1:100'"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_status_4(args: list[str], message: str) -> None:
    code, out, err = invoke(args)
    assert code == EXIT_NFC
    assert out == "" and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "one JSON object"),
        ('{"type": "grant"}', "holds a 'grant' record, not 'ack'"),
        ('{"accepted": true, "colour": 1}', "ack has no field 'colour'"),
        ('{"accepted": "yes"}', "ack.accepted must be true or false, not str"),
    ],
)
def test_bad_json_input_is_exit_status_4(text: str, message: str) -> None:
    code, out, err = invoke(["ndef", "encode", "ack", "--from-json", "-"], stdin=text)
    assert (code, out) == (EXIT_NFC, "") and message in err


def test_json_errors_are_json() -> None:
    code, out, _ = invoke(["--json", "ndef", "decode", "d4"])
    assert code == EXIT_NFC
    assert json.loads(out)["error"] == "decode_error"


def test_usage_errors_stay_usage_errors() -> None:
    code, _, err = invoke(["ndef", "encode", "hello", "--role", "admin"])
    assert code == EXIT_USAGE and "admin" in err


def test_types_lists_every_record() -> None:
    result = CliRunner().invoke(cli, ["--json", "ndef", "types"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["means"]["type"] == "urn:nfc:ext:nfcpay.org:means"
    assert "usage_auth" in data["grant"]["fields"]
