"""Bad-input fuzz (issue 6) for what tests/records and tests/unit do not fuzz yet.

Already covered elsewhere, not repeated here: byte mutations and random bytes through
``decode_message`` (tests/records/test_fuzz.py), arbitrary JSON through every record's
``from_json`` (tests/records/test_fields.py), and ``parse_duration`` on short random text
(tests/unit/test_params.py).

Added here:

* **structure-aware CBOR** — well-framed NDEF records of every nfcpay type whose payload is
  valid CBOR of any shape (unknown keys, wrong types, huge and negative integers, floats,
  nesting), and valid records with one field's wire value replaced by anything. Byte
  mutations almost never get past the CBOR parser, so these reach the field checks.
* **the CLI's AMOUNT and DURATION parameters** — text shaped like what people type, plus
  very long digit runs and non-ASCII digits: a value in range or a click usage error,
  never another exception.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import cbor2
import click
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nfcpay.cli.params import AMOUNT, DURATION, MAX_DURATION, parse_duration, to_money
from nfcpay.errors import DecodeError, MoneyError
from nfcpay.money import CURRENCY_EXPONENTS, MAX_MINOR, Money
from nfcpay.records import RECORD_CLASSES, VERSION, NfcpayRecord, decode_message, encode_message
from nfcpay.records.samples import sample_records
from tests.support.records import framed

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- NDEF decoders: valid framing, valid CBOR, anything inside --------------------------------

cbor_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, -1, 1, 2**31, 2**33, 2**63, 2**64, MAX_MINOR, MAX_MINOR + 1])
    | st.floats(allow_nan=True)
    | st.binary(max_size=80)
    | st.text(max_size=40)
)
cbor_values = st.recursive(
    cbor_leaves,
    lambda inner: (
        st.lists(inner, max_size=9) | st.dictionaries(st.integers(-2, 20), inner, max_size=4)
    ),
    max_leaves=8,
)


def decodes_or_refuses(octets: bytes) -> list[NfcpayRecord] | None:
    """Records (canonical: they re-encode to ``octets``) or None on DecodeError; else raise."""
    try:
        records = decode_message(octets)
    except DecodeError as exc:
        assert exc.message
        return None
    assert encode_message(records) == octets
    return records


#: Short type name → the CBOR keys its record class declares.
TYPES = {name: [spec.key for spec in cls.wire_fields()] for name, cls in RECORD_CLASSES.items()}
#: Unknown keys too: other integers and text.
other_keys = st.integers(-3, 30) | st.text(max_size=2)


@st.composite
def any_payload(draw: st.DrawFn) -> tuple[str, bytes]:
    """A record type and a payload: a version byte and a CBOR map of any shape."""
    name = draw(st.sampled_from(sorted(TYPES)))
    keys = st.sampled_from(TYPES[name]) | other_keys
    payload_map = draw(st.dictionaries(keys, cbor_values, max_size=len(TYPES[name]) + 2))
    ours = type(sample_records()[name]).version
    version = draw(st.sampled_from([ours, ours, ours, VERSION, 0, 2, 255]))
    return name, bytes([version]) + cbor2.dumps(payload_map, canonical=draw(st.booleans()))


@FUZZ
@given(any_payload())
def test_any_cbor_map_under_any_record_type_decodes_or_is_refused(
    payload: tuple[str, bytes],
) -> None:
    decodes_or_refuses(framed(*payload))


@FUZZ
@given(
    st.sampled_from(sorted(TYPES)).flatmap(
        lambda n: st.tuples(st.just(n), st.sampled_from(TYPES[n]), cbor_values)
    )
)
def test_one_field_of_a_valid_record_replaced_by_anything(change: tuple[str, int, Any]) -> None:
    """One declared field gets an arbitrary CBOR value; the other fields stay valid."""
    name, key, value = change
    sample = sample_records()[name]
    wire = {**sample.to_wire(), key: value}
    payload = bytes([type(sample).version]) + cbor2.dumps(wire, canonical=True)
    records = decodes_or_refuses(framed(name, payload))
    if records is not None and records[0].to_wire() == sample.to_wire():
        assert value == sample.to_wire().get(key)  # only the unchanged value round-trips


# --- CLI parameters ------------------------------------------------------------------------

DIGITS = "0123456789"
#: Digits of other scripts that ``\d`` matches: Arabic-Indic, Devanagari, fullwidth.
OTHER_DIGITS = "\u0661\u0662\u0967\uff11\uff12"
amount_texts = st.one_of(
    st.text(DIGITS + ",._ -+eE" + OTHER_DIGITS, max_size=30),
    st.builds(
        lambda whole, frac, code: f"{whole:,}{frac}{code}",
        st.integers(0, 10**20),
        st.sampled_from(["", ".", ".5", ".50", ".505", ".5050"]),
        st.sampled_from(["", " KRW", " usd", " KWD", " XXX", " KRW KRW"]),
    ),
    st.integers(1, 6000).map(lambda n: "9" * n),
    st.text(max_size=20),
)
duration_texts = st.one_of(
    st.lists(
        st.tuples(
            st.integers(0, 10**30).map(str) | st.integers(1, 6000).map(lambda n: "9" * n),
            st.sampled_from("smhdSMHDxy "),
        ),
        min_size=1,
        max_size=4,
    ).map(lambda parts: " ".join(f"{n}{unit}" for n, unit in parts)),
    st.text(DIGITS + "smhd -+." + OTHER_DIGITS, max_size=24),
)


@FUZZ
@given(amount_texts)
@example("9" * 5000)  # more digits than int() converts: was a ValueError traceback
@example("\uff11\uff12,\uff10\uff10\uff10")
def test_amount_parameter_accepts_or_gives_a_usage_error(text: str) -> None:
    try:
        kept = AMOUNT.convert(text, None, None)
    except click.BadParameter as exc:
        assert exc.message
        return
    assert kept == text
    for currency in CURRENCY_EXPONENTS:
        try:
            money = to_money(kept, currency)
        except MoneyError as exc:
            assert exc.message
            continue
        assert isinstance(money, Money) and type(money.minor) is int
        assert 0 <= money.minor <= MAX_MINOR


@FUZZ
@given(duration_texts)
@example("9999999999999999d")  # past timedelta's range: was an OverflowError traceback
@example("1" * 5000 + "s")  # more digits than int() converts: Python's own message leaked
def test_duration_is_in_range_or_a_clear_value_error(text: str) -> None:
    try:
        duration = parse_duration(text)
    except ValueError as exc:
        assert "duration" in str(exc) and "int_max_str_digits" not in str(exc)
        return
    assert timedelta(0) < duration <= MAX_DURATION


@click.command()
@click.option("--amount", type=AMOUNT)
@click.option("--expires", type=DURATION)
def _command(amount: str | None, expires: timedelta | None) -> None:
    click.echo("ok")


@settings(max_examples=100, deadline=None)
@given(amount_texts, duration_texts)
@example("9" * 5000, "9999999999999999d")
def test_cli_options_exit_0_or_2(amount: str, expires: str) -> None:
    result = CliRunner().invoke(_command, ["--amount", amount, "--expires", expires])
    assert result.exit_code in (0, 2), result.exception
    assert (result.exit_code == 0) == (result.output == "ok\n")
