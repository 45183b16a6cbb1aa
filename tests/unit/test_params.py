from __future__ import annotations

from datetime import timedelta

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from nfcpay.cli.params import AMOUNT, DURATION, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("1d12h", 129600), (" 1h 30m ", 5400)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "2", "h", "2x", "-1h", "0s", "400d", "1.5h", "2h!"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.text(max_size=20))
def test_parse_duration_only_returns_or_raises_value_error(text: str) -> None:
    try:
        result = parse_duration(text)
    except ValueError:
        return
    assert timedelta(0) < result <= timedelta(days=366)


def test_param_types_give_click_usage_errors() -> None:
    @click.command()
    @click.option("--amount", type=AMOUNT)
    @click.option("--expires", type=DURATION)
    def command(amount: str, expires: timedelta) -> None:
        click.echo(f"{amount} {expires.total_seconds():.0f}")

    runner = CliRunner()
    assert (
        runner.invoke(command, ["--amount", "12,000", "--expires", "2h"]).output == "12,000 7200\n"
    )
    bad = runner.invoke(command, ["--amount", "12.3.4"])
    assert bad.exit_code == 2 and "cannot read amount" in bad.output
    bad = runner.invoke(command, ["--expires", "soon"])
    assert bad.exit_code == 2 and "cannot read duration" in bad.output


def test_an_amount_in_another_currency_is_read_in_that_currency_then_refused_plainly() -> None:
    from nfcpay.cli.terminal import amount_in

    assert AMOUNT.convert("12.50 USD", None, None) == "12.50 USD"  # USD's syntax: accepted
    with pytest.raises(click.BadParameter, match="USD has 2 decimal places"):
        AMOUNT.convert("12.505 USD", None, None)
    with pytest.raises(click.UsageError, match="is in USD, but this works in KRW"):
        amount_in("12.50 USD", "KRW")
    assert amount_in("12,000 krw", "KRW").minor == 12_000
