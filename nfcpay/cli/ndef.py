"""``nfcpay ndef``: build nfcpay NDEF records by hand and read captured ones.

``encode`` has one subcommand per record type with an option per field, generated from the
record's declared fields, so a new field shows up here without touching this module.
Amounts are typed as people write them (``12,000``, ``12.50``) in the record's currency;
bytes are hex. Usage-auth values and signatures are never printed in full.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import IO, Any

import click

from nfcpay.cli.output import CliContext
from nfcpay.cli.params import AMOUNT, to_money
from nfcpay.errors import DecodeError, MoneyError
from nfcpay.money import format_minor
from nfcpay.records import RECORD_CLASSES, NfcpayRecord, decode_message, encode_message
from nfcpay.records.fields import (
    Amount,
    Binary,
    Choice,
    Flag,
    Integer,
    Items,
    Kind,
    Nested,
    Spec,
    Time,
)

_HEX = re.compile(r"[0-9a-fA-F:\s]+")


@click.group()
def ndef() -> None:
    """Encode and decode nfcpay NDEF records (hex in, hex out)."""


@ndef.command("types")
@click.pass_obj
def types_command(obj: CliContext) -> None:
    """List the record types and their fields."""
    data = {
        name: {"type": cls._type, "fields": [s.name for s in cls.wire_fields()]}
        for name, cls in RECORD_CLASSES.items()
    }
    lines = [f"{n:<10} {i['type']}\n  " + ", ".join(i["fields"]) for n, i in data.items()]
    obj.emit(data, "\n".join(lines))


@ndef.group("encode")
def encode_group() -> None:
    """Build one record and print its NDEF message as hex."""


@ndef.command("decode")
@click.argument("source", metavar="FILE|HEX|-")
@click.option("--expect", type=click.Choice(sorted(RECORD_CLASSES)), help="Required record type.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.pass_obj
def decode_command(obj: CliContext, source: str, expect: str | None, as_json: bool) -> None:
    """Decode an NDEF message from a file (binary or hex), stdin (-) or a hex argument."""
    octets = _read_source(source)
    records = decode_message(octets, expect=RECORD_CLASSES[expect] if expect else None)
    data = {"size": len(octets), "records": [{"type": r.type_name, **r.to_json()} for r in records]}
    _output(obj, as_json).emit(data, lambda: click.echo(_describe(records)))


def _output(obj: CliContext, as_json: bool) -> CliContext:
    """The context with a command-level ``--json`` folded into the global one."""
    return dataclasses.replace(obj, as_json=obj.as_json or as_json)


def _read_source(source: str) -> bytes:
    """``-`` is stdin, text made of hex digits is hex, anything else a file (binary or hex)."""
    if source == "-":
        raw = sys.stdin.buffer.read()
    elif _HEX.fullmatch(source):
        return _from_hex(source.encode(), f"{source[:40]!r} is not whole bytes of hex")
    else:
        try:
            raw = Path(source).read_bytes()
        except OSError as exc:
            problem = f"{source[:60]!r} is neither hex nor a readable file: {exc.strerror}"
            raise DecodeError(problem) from None
    if raw[:1] and raw[0] >= 0x80:  # binary: an NDEF message starts with the MB flag
        return raw
    return _from_hex(raw, f"{source} holds neither an NDEF message nor hex")


def _from_hex(raw: bytes, problem: str) -> bytes:
    try:
        return bytes.fromhex(raw.decode("ascii").replace(":", " "))
    except (UnicodeDecodeError, ValueError):
        raise DecodeError(problem) from None


def _describe(records: list[NfcpayRecord]) -> str:
    """Readable lines: amounts with their currency, secrets shortened, empty fields left out."""
    lines = []
    for record in records:
        size = len(encode_message([record]))
        lines.append(f"{record.type.removeprefix('urn:nfc:ext:')}  ({size} bytes)")
        currency = getattr(record, "currency", None)
        for spec in record.wire_fields():
            value = getattr(record, spec.name)
            if value is None or spec.is_default(value):
                continue
            lines.append(f"  {spec.name:<20} {_show(spec.kind, value, currency)}")
    return "\n".join(lines)


def _show(kind: Kind, value: Any, currency: str | None) -> str:
    if isinstance(kind, Amount) and currency is not None:
        return format_minor(value, currency)
    if isinstance(kind, Items):
        return ", ".join(_show(kind.item, item, currency) for item in value)
    if isinstance(kind, Nested):
        return " ".join(
            f"{spec.name}={_show(spec.kind, getattr(value, spec.name), currency)}"
            for spec in value.wire_fields()
        )
    shown = kind.to_json(value, reveal=False)
    return str(shown).lower() if isinstance(shown, bool) else str(shown)


# --- one encode subcommand per record type ------------------------------------------------------


def _option_for(spec: Spec) -> click.Option:
    kind = spec.kind
    name = spec.name.replace("_", "-")
    help_text = f"{spec.name} (CBOR key {spec.key}){'' if not spec.required else ', required'}"
    if isinstance(kind, Flag):
        return click.Option([f"--{name}/--no-{name}"], default=None, help=help_text)
    if isinstance(kind, Items):
        singular = name.removesuffix("s")
        if isinstance(kind.item, Nested):
            parts = ":".join(s.name.upper() for s in kind.item.struct.wire_fields())
            help_text += f"; each {parts}"
        help_text += "; repeatable"
        return click.Option([f"--{singular}", spec.name], multiple=True, help=help_text)
    if isinstance(kind, Choice):
        return click.Option([f"--{name}"], type=click.Choice(list(kind.codes)), help=help_text)
    if isinstance(kind, Amount):
        return click.Option([f"--{name}"], type=AMOUNT, help=help_text + "; e.g. 12,000 or 12.50")
    if isinstance(kind, Integer):
        return click.Option([f"--{name}"], type=int, help=help_text)
    if isinstance(kind, Binary):
        help_text += "; hex"
    if isinstance(kind, Time):
        help_text += "; ISO 8601, e.g. 2026-12-31T23:59:59Z"
    return click.Option([f"--{name}"], help=help_text)


def _json_value(kind: Kind, text: Any, currency: str | None, where: str) -> Any:
    """An option's text as the JSON value :meth:`from_json` reads."""
    if isinstance(kind, Amount):
        if currency is None:
            raise DecodeError(f"{where}: give --currency to read amounts")
        try:
            return to_money(text, currency).minor
        except MoneyError as exc:
            raise DecodeError(f"{where}: {exc.message}") from None
    if isinstance(kind, Items):
        return [_json_value(kind.item, item, currency, where) for item in text]
    if isinstance(kind, Nested):
        specs = kind.struct.wire_fields()
        parts = text.split(":")
        if len(parts) != len(specs):
            layout = ":".join(s.name.upper() for s in specs)
            raise DecodeError(f"{where} must be {layout}, got {text!r}")
        pairs = zip(specs, parts, strict=True)
        return {s.name: _json_value(s.kind, part, currency, where) for s, part in pairs}
    return text


def _load_json(stream: IO[str] | None, type_name: str) -> dict[str, Any]:
    if stream is None:
        return {}
    try:
        data = json.load(stream)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"--from-json is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DecodeError("--from-json must hold one JSON object of fields")
    given = data.pop("type", type_name)
    if given != type_name:
        raise DecodeError(f"--from-json holds a {given!r} record, not {type_name!r}")
    return data


def _encode_command(cls: type[NfcpayRecord]) -> click.Command:
    specs = cls.wire_fields()
    summary = (cls.__doc__ or "").strip().splitlines()[0]

    @click.pass_obj
    def command(
        obj: CliContext, /, from_json: IO[str] | None, as_json: bool, **options: Any
    ) -> None:
        data = _load_json(from_json, cls.type_name)
        currency = options.get("currency") or data.get("currency")
        for spec in specs:
            given = options[spec.name]
            if given is not None and given != ():
                where = f"{cls.type_name}.{spec.name}"
                data[spec.name] = _json_value(spec.kind, given, currency, where)
        octets = encode_message([cls.from_json(data)])
        out = {"type": cls.type_name, "size": len(octets), "hex": octets.hex()}
        _output(obj, as_json).emit(out, octets.hex())

    params: list[click.Parameter] = [_option_for(spec) for spec in specs]
    params += [
        click.Option(
            ["--from-json", "from_json"],
            type=click.File("r"),
            help="Fields from a JSON object (FILE or -); options override it.",
        ),
        click.Option(["--json", "as_json"], is_flag=True, help="Machine-readable JSON output."),
    ]
    return click.Command(
        cls.type_name,
        callback=command,
        params=params,
        help=f"Encode one {cls._type.removeprefix('urn:nfc:ext:')} record: {summary}",
    )


for _cls in RECORD_CLASSES.values():
    encode_group.add_command(_encode_command(_cls))
