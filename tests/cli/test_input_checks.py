"""What the CLI checks before asking the server, and how a refusal (its own or the server's)
reads: exit status 2, one plain sentence naming the option, a card number only masked."""

from __future__ import annotations

import json
import types
import typing
from datetime import date
from pathlib import Path

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from nfcpay import crypto
from nfcpay.cli import cli
from nfcpay.cli.output import EXIT_SERVER, EXIT_USAGE, exit_code_for, report, run_guarded
from nfcpay.cli.params import (
    AMOUNT,
    CATEGORY,
    CURRENCY,
    IDEMPOTENCY_KEY,
    LABEL,
    MAX_IDEMPOTENCY_KEY,
    POSITIVE_AMOUNT,
    SERVER_FIELDS,
    TERMINAL_ID,
    card_expiry,
    card_number,
    expiry_rule,
    refusal,
)
from nfcpay.errors import ApiError, ServerUnavailable

TODAY = date(2026, 12, 4)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = run_guarded(cli, list(args))
    out, err = capsys.readouterr()
    return status, out, err


# --- card numbers --------------------------------------------------------------------------

#: A real card's digits: 12-19 of them with a valid check digit, outside the virtual range.
real_cards = (
    st.text("0123456789", min_size=11, max_size=18)
    .map(lambda partial: partial + crypto.luhn_check_digit(partial))
    .filter(lambda number: not crypto.is_virtual_card_number(number))
)


@given(real_cards, st.data())
def test_a_valid_card_number_passes_however_it_is_grouped(number: str, data: st.DataObject) -> None:
    separators = data.draw(st.lists(st.sampled_from(["", " ", "-"]), min_size=len(number)))
    typed = "".join(digit + sep for digit, sep in zip(number, separators, strict=False))
    assert card_number(typed) == number


@given(real_cards, st.data())
def test_any_single_digit_change_fails_the_check_digit(number: str, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(number) - 1))
    digit = data.draw(st.sampled_from("0123456789").filter(lambda d: d != number[at]))
    typo = number[:at] + digit + number[at + 1 :]
    with pytest.raises(ValueError, match="fails its check digit: a typing mistake") as refused:
        card_number(typo)
    assert typo not in str(refused.value)  # never said back whole ...
    assert crypto.mask_card_number(typo) in str(refused.value)  # ... only masked, 6 + 4


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("4111 1111 1111 111x", "digits only"),
        ("", "digits only"),
        ("\uff14" + "\uff11" * 15, "digits only"),  # fullwidth digits
        ("4111 1111 111", "has 11 digits; a card has 12 to 19"),
        ("4" * 20, "has 20 digits"),
    ],
)
def test_what_is_not_a_card_number_is_said_plainly(typed: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        card_number(typed)


def test_a_virtual_card_number_is_not_a_real_card() -> None:
    virtual = crypto.new_virtual_card_number()
    with pytest.raises(ValueError, match="nfcpay virtual card") as refused:
        card_number(virtual)
    assert virtual not in str(refused.value)


# --- expiry ----------------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["1229", "12-29", "13/29", "00/29", "12/2029", "1/29", ""])
def test_an_expiry_that_is_not_mm_yy_says_what_is(typed: str) -> None:
    with pytest.raises(ValueError) as refused:
        card_expiry(typed, TODAY)
    assert str(refused.value) == "expiry must be MM/YY, e.g. 12/29" == expiry_rule(TODAY)


@given(st.integers(1, 12), st.integers(0, 99))
def test_an_expiry_is_good_through_the_last_day_of_its_month(month: int, yy: int) -> None:
    typed = f"{month:02d}/{yy:02d}"
    if (2000 + yy, month) >= (TODAY.year, TODAY.month):
        assert card_expiry(typed, TODAY) == typed
    else:
        with pytest.raises(ValueError, match=f"expiry {typed} is in the past"):
            card_expiry(typed, TODAY)


# --- amounts, texts, codes, ids, currencies, keys ------------------------------------------------


@pytest.mark.parametrize("typed", ["0", "0.00", "0 KRW", "0,000"])
def test_a_price_cap_or_refund_of_nothing_is_refused(typed: str) -> None:
    assert AMOUNT.convert(typed, None, None) == typed  # an opening balance may be 0
    with pytest.raises(click.BadParameter, match="amount must be more than 0"):
        POSITIVE_AMOUNT.convert(typed, None, None)


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        (LABEL, ["a", "Bob's phone", "x" * 200], ["", "   ", "x" * 201]),
        (CATEGORY, ["5812", "KR-11", "a.b:c_d"], ["", "a b", "x" * 33, "-5812"]),
        (TERMINAL_ID, ["t_3fz7q2m4k9xw6a5b"], ["x", "t_", "T_ABC", "m_3fz7q2m4k9xw6a5b"]),
        (IDEMPOTENCY_KEY, ["k", "x" * MAX_IDEMPOTENCY_KEY], ["", "x" * 65, "a\tb", "ключ"]),
    ],
)
def test_texts_codes_ids_and_keys(kind: click.ParamType, good: list[str], bad: list[str]) -> None:
    for value in good:
        assert kind.convert(value, None, None) == value
    for value in bad:
        with pytest.raises(click.BadParameter):
            kind.convert(value, None, None)


def test_currencies_are_read_in_any_case_and_unknown_ones_named() -> None:
    assert CURRENCY.convert("usd", None, None) == "USD"
    with pytest.raises(click.BadParameter, match="unknown currency 'XYZ'"):
        CURRENCY.convert("XYZ", None, None)


def test_the_idempotency_key_limit_is_the_servers() -> None:
    from nfcpay.server.services.idempotency import MAX_KEY_LENGTH

    assert MAX_IDEMPOTENCY_KEY == MAX_KEY_LENGTH


# --- refusals read the same from the CLI and from the server ----------------------------------


def test_every_request_field_a_person_types_names_its_option() -> None:
    """A new field in a request body must be mapped to its option (or said not to be typed)."""
    from nfcpay.server import schemas

    not_typed = {
        "role",  # click.Choice
        "public_key",
        "kind",
        "currency",  # the terminal's own, checked at `terminal init`
        "status",
        "rights.max_uses",  # click.IntRange with the server's own bounds
        "challenge",
        "means.presenting_terminal",
        "means.grants",
        "means.own_amount",
        "means.signature",
        "means.version",
        "split_mode",
        "tap_fingerprint",  # what the tapping terminal's hello claimed
        "mode",  # click.Choice
    }
    bodies = [
        schemas.TerminalIn,
        schemas.CategoriesIn,
        schemas.FundingSourceIn,
        schemas.SourceStatusIn,
        schemas.GrantIn,
        schemas.PaymentIn,
        schemas.RefundIn,
        schemas.BillIn,
    ]
    fields = {path for body in bodies for path in _leaves(body)}
    assert not_typed <= fields
    assert fields - not_typed == set(SERVER_FIELDS) - {"after", "Idempotency-Key"}  # not bodies


def _leaves(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted paths of a request body's fields, as a 422 names them (into nested objects,
    not into lists)."""
    found = set()
    for name, info in model.model_fields.items():
        union = typing.get_origin(info.annotation) in (typing.Union, types.UnionType)
        options = typing.get_args(info.annotation) if union else (info.annotation,)
        nested = [t for t in options if isinstance(t, type) and issubclass(t, BaseModel)]
        if nested:
            found |= _leaves(nested[0], f"{prefix}{name}.")
        else:
            found.add(prefix + name)
    return found


@pytest.mark.parametrize(
    ("field", "code", "message", "said"),
    [
        (
            "expiry",
            "validation_error",
            r"expiry: String should match pattern '^(0[1-9]|1[0-2])/\d{2}$'",
            f"Invalid value for '--expiry': {expiry_rule()}",
        ),
        (
            "allowed_terminals.0",
            "terminal_not_found",
            "no terminal t_abc",
            "Invalid value for '--to': no terminal t_abc",
        ),
        (
            "rights.per_use_cap",
            "invalid_request",
            "per_use_cap cannot exceed amount_cap",
            "Invalid value for '--per-use': --per-use cannot exceed --amount",
        ),
        ("kind", "invalid_request", "a wallet takes only a balance", None),
        (None, "grant_not_found", "no grant g_x visible to you", None),
    ],
)
def test_the_servers_refusal_names_the_option(
    field: str | None, code: str, message: str, said: str | None
) -> None:
    option, sentence = refusal(field, code, message)
    assert sentence == (said or message)
    assert (option is None) == (said is None)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ApiError("bad", code="validation_error", status=422, field="expiry"), EXIT_USAGE),
        (ApiError("bad", code="payment_error", status=400), EXIT_USAGE),
        (ApiError("no grant g_x", code="grant_not_found", status=404), EXIT_USAGE),
        (ApiError("fully refunded", code="fully_refunded", status=409), EXIT_USAGE),
        (ApiError("in progress", code="idempotency_in_progress", status=409, retryable=True), 5),
        (ApiError("bad signature", code="authentication_failed", status=401), EXIT_SERVER),
        (ApiError("wrong role", code="forbidden", status=403), EXIT_SERVER),
        (ServerUnavailable("busy", code="rate_limited", status=429), EXIT_SERVER),
        (ServerUnavailable("down", code="internal_error", status=500), EXIT_SERVER),
        (ServerUnavailable("no answer", code="connect_failed"), EXIT_SERVER),
    ],
)
def test_only_a_server_that_could_not_answer_is_exit_5(error: ApiError, status: int) -> None:
    assert exit_code_for(error) == status


def test_a_refused_field_in_json_keeps_the_keys_and_adds_the_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    error = ApiError("expiry: String should match pattern", code="validation_error", status=422)
    error.field = "expiry"
    assert report(error, as_json=True) == EXIT_USAGE
    assert json.loads(capsys.readouterr().out) == {
        "ok": False,
        "error": "validation_error",
        "message": f"Invalid value for '--expiry': {expiry_rule()}",
        "field": "--expiry",
    }


# --- the commands: refused before the home is even read --------------------------------------

BAD_CARD = ("--number", "4111 1111 1111 1112", "--expiry", "12/39", "--limit", "100")


def test_a_mistyped_card_is_refused_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "--home", str(tmp_path), "user", "add-card", *BAD_CARD)
    assert status == 2 and out == ""
    assert (
        "Invalid value for '--number': card number 411111******1112 fails its check digit: "
        "a typing mistake?" in err
    )
    assert "4111 1111 1111 1112" not in err and "4111111111111112" not in err


def test_a_refusal_with_json_is_one_document_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "--json", "--home", str(tmp_path), "user", "add-card", *BAD_CARD)
    assert status == 2 and err == ""
    data = json.loads(out)
    assert data["field"] == "--number" and data["error"] == "validation_error"
    assert data["ok"] is False and "411111******1112" in data["message"]


def test_a_missing_option_with_json_is_a_usage_error_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "--json", "--home", str(tmp_path), "user", "add-card")
    assert status == 2
    assert json.loads(out) == {
        "ok": False,
        "error": "usage_error",
        "message": "Missing option '--number'.",
    }


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("terminal", "init", "--role", "user", "--label", ""), "--label"),
        (("terminal", "init", "--role", "user", "--label", "x", "--currency", "XYZ"), "--currency"),
        (("terminal", "init", "--role", "merchant", "--label", "x", "--region", "a b"), "--region"),
        (
            ("terminal", "init", "--role", "merchant", "--label", "x", "--category", "5812,a b"),
            "--category",
        ),
        (
            (
                "terminal",
                "init",
                "--role",
                "merchant",
                "--label",
                "x",
                "--category",
                "5812,5999",
                "--category",
                "5812",
            ),
            "--category",
        ),
        (("merchant", "categories", "set", "5812", "a b"), "CATEGORY..."),
        (("merchant", "categories", "set", "5812,5999", "5999"), "CATEGORY..."),
        (("user", "add-card", "--number", "4111111111111111", "--expiry", "1239"), "--expiry"),
        (("user", "add-wallet", "--balance", "-5"), "--balance"),
        (("user", "issue", "--to", "bob", "--amount", "5"), "--to"),
        (("user", "issue", "--to", "t_abc", "--amount", "0"), "--amount"),
        (("user", "issue", "--to", "t_abc", "--amount", "5", "--source", "card"), "--source"),
        (("user", "issue", "--to", "t_abc", "--amount", "5", "--purpose", "food!"), "--purpose"),
        (("user", "issue", "--to", "t_abc", "--amount", "5", "--merchant", "shop"), "--merchant"),
        (("user", "issue", "--to", "t_abc", "--amount", "5", "--per", "year:5"), "--per"),
        (("user", "issue", "--to", "t_abc", "--amount", "5", "--per", "5"), "--per"),
        (("user", "issue", "--to", "t_abc", "--amount", "5", "--per", "day:0"), "--per"),
        (("user", "give", "--amount", "5", "--time-zone", "Mars/Olympus"), "--time-zone"),
        (
            ("terminal", "init", "--role", "user", "--label", "x", "--time-zone", "Seoul"),
            "--time-zone",
        ),
        (("user", "give", "--grant", "grant-1"), "--grant"),
        (("user", "revoke", "g_abc", "oops"), "GRANT_IDS"),
        (("user", "notifications", "--after", "7"), "--after"),
        (("merchant", "charge", "--amount", "0"), "--amount"),
        (("merchant", "charge", "--amount", "5", "--purpose", "x" * 33), "--purpose"),
        (("merchant", "refund", "p_abc", "--amount", "0"), "--amount"),
        (("merchant", "refund", "12"), "PAYMENT_ID"),
        (("merchant", "refund", "p_abc", "--idempotency-key", "x" * 65), "--idempotency-key"),
    ],
)
def test_every_command_refuses_what_it_can_check_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], option: str
) -> None:
    status, out, _ = run(capsys, "--json", "--home", str(tmp_path), "--server", "http://x", *args)
    data = json.loads(out)
    assert status == 2, data
    assert data["field"] == option and data["message"].startswith("Invalid value for ")
    assert not (tmp_path / "terminal.key").exists()  # nothing was created or sent
