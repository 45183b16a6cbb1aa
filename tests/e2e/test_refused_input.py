"""Input the server refuses is the person's mistake, not an outage (issue 13): exit status 2
and a plain sentence naming the option, whether the CLI or the server refuses it.

Terminals run as separate ``nfcpay`` processes against a real server process; the per-field
refusals are real requests to that server, whose answers the CLI then reports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from nfcpay import crypto
from nfcpay.cli.output import report
from nfcpay.cli.params import SERVER_FIELDS, expiry_rule
from nfcpay.client import PaymentClient
from nfcpay.errors import ApiError
from nfcpay.testing.server import PaymentScene, ServerProcess, payment_scene, register_terminal
from tests.support.cli import Cli, finish

GOOD_CARD = ("--number", "4111 1111 1111 1111", "--expiry", "12/39", "--limit", "500,000")
TYPO_CARD = ("--number", "4111 1111 1111 1112", "--expiry", "12/39", "--limit", "500,000")
#: What a refusal must not read like: pydantic's wording or the API's own field names.
NOT_PLAIN = re.compile(r"should|pattern|Input |String |Value error|_cap\b|valid_until|\w+_id\b")


def _sources(cli: Cli, name: str) -> list[dict[str, Any]]:
    done = cli.run(name, "user", "sources")
    assert done.status == 0, done
    return list(done.data["sources"])


# --- the issue's two cases, as a person meets them ----------------------------------------------


def test_a_card_number_that_fails_its_check_digit_is_exit_2_not_5(cli: Cli) -> None:
    cli.init("user", "user")
    done = cli.run("user", "user", "add-card", *TYPO_CARD)
    assert done.status == 2, done  # it was 5: "server unreachable or failed"
    assert done.data == {
        "ok": False,
        "error": "validation_error",
        "message": "Invalid value for '--number': card number 411111******1112 fails its "
        "check digit: a typing mistake?",
        "field": "--number",
    }
    person = finish(cli.start("user", "user", "add-card", *TYPO_CARD, answers=""))
    assert person.status == 2
    assert "card number 411111******1112 fails its check digit: a typing mistake?" in (
        person.stderr
    )
    for said in (json.dumps(done.data), done.stderr, person.stderr):
        assert "4111 1111 1111 1112" not in said and "4111111111111112" not in said
    assert _sources(cli, "user") == []  # refused before anything was sent


def test_a_bad_expiry_is_said_in_a_sentence_not_a_pattern(cli: Cli) -> None:
    cli.init("user", "user")
    done = cli.run("user", "user", "add-card", *GOOD_CARD[:2], "--expiry", "1239", "--limit", "1")
    assert done.status == 2, done
    assert done.data["message"] == f"Invalid value for '--expiry': {expiry_rule()}"
    assert done.data["field"] == "--expiry" and not NOT_PLAIN.search(done.data["message"])
    expired = cli.run(
        "user", "user", "add-card", *GOOD_CARD[:2], "--expiry", "01/20", "--limit", "1"
    )
    assert expired.status == 2 and "expiry 01/20 is in the past" in expired.data["message"]
    assert _sources(cli, "user") == []


# --- what only the server can know, through the commands ------------------------------------------


def test_what_only_the_server_knows_is_refused_with_exit_2(cli: Cli) -> None:
    cli.init("user", "user")
    shop = cli.init("shop", "merchant")
    assert cli.run("user", "user", "add-card", *GOOD_CARD).status == 0
    nobody = crypto.new_id("t")
    refusals = {
        ("user", "issue", "--to", nobody, "--amount", "5,000"): (
            "terminal_not_found",
            "--to",
            f"Invalid value for '--to': no terminal {nobody}",
        ),
        ("user", "issue", "--to", shop, "--amount", "5,000"): (
            "invalid_request",
            "--to",
            f"Invalid value for '--to': {shop} is a merchant terminal; grants go to user or "
            "target terminals",
        ),
        ("user", "notifications", "--after", "n_nothere"): (
            "invalid_request",
            "--after",
            "Invalid value for '--after': no notification n_nothere of yours",
        ),
        ("user", "revoke", "g_nothere"): ("grant_not_found", None, "no grant g_nothere"),
        ("shop", "merchant", "refund", "p_nothere"): ("payment_not_found", None, "no payment"),
    }
    for args, (code, option, said) in refusals.items():
        name = "shop" if args[0] == "shop" else "user"
        done = cli.run(name, *(args[1:] if args[0] == "shop" else args))
        assert done.status == 2, done
        assert done.data["error"] == code and done.data.get("field") == option, done
        assert done.data["message"].startswith(said), done


def test_authentication_and_permission_answers_keep_their_status(cli: Cli) -> None:
    """A grant bound to another user's terminal is visible to it, but only its issuer may
    revoke it: the server answers 403, which stays exit 5 as before."""
    cli.init("ann", "user")
    bob = cli.init("bob", "user")
    assert cli.run("ann", "user", "add-card", *GOOD_CARD).status == 0
    issued = cli.run("ann", "user", "issue", "--to", bob, "--amount", "1,000")
    assert issued.status == 0, issued
    refused = cli.run("bob", "user", "revoke", issued.data["grant"]["grant_id"])
    assert refused.status == 5 and refused.data["error"] == "forbidden", refused
    assert "field" not in refused.data


def test_a_server_that_cannot_answer_is_still_exit_5(cli: Cli) -> None:
    cli.init("user", "user")
    done = cli.run("user", "user", "add-card", *GOOD_CARD, server="http://127.0.0.1:9")
    assert done.status == 5 and done.data["error"] == "connect_failed", done


# --- every field the server validates, as the server refuses it -----------------------------------


@dataclass
class World:
    """A server's terminals, a funding source and an approved payment to refuse things with."""

    url: str
    scene: PaymentScene
    payment_id: str

    @property
    def owner(self) -> PaymentClient:
        return self.scene.owner.client

    @property
    def shop(self) -> PaymentClient:
        return self.scene.merchant.client

    @property
    def target(self) -> PaymentClient:
        return self.scene.target.client

    def grant(
        self,
        *,
        source_id: str | None = None,
        to: list[str] | None = None,
        bill_id: str | None = None,
        **rights: Any,
    ) -> Any:
        """Issue a grant on the scene's source for its target; ``rights`` as issue_grant's."""
        return self.owner.issue_grant(
            source_id or self.scene.source["source_id"],
            to or [self.scene.target.terminal_id],
            currency="KRW",
            bill_id=bill_id,
            **{"amount_cap": 5_000, **rights},
        )


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> World:
    scene = payment_scene(server.url)
    paid = scene.pay(1_000)
    assert paid["status"] == "approved", paid
    return World(server.url, scene, paid["payment_id"])


CARD = "4111111111111111"
Request = Callable[[World], object]


def _register(label: str = "x", **merchant: Any) -> Request:
    def send(w: World) -> object:
        if merchant:
            return register_terminal(w.url, "merchant", merchant=merchant)
        key = crypto.generate_terminal_key()
        return PaymentClient.register_terminal(w.url, key, role="user", label=label)

    return send


#: (field as the server names it, the server's code, a real request it refuses that way)
REFUSALS: list[tuple[str, str, Request]] = [
    ("label", "validation_error", _register(label="")),
    ("merchant.name", "validation_error", _register(name="")),
    ("merchant.category", "validation_error", _register(category="")),
    ("merchant.categories", "validation_error", _register(categories=["5812", ""])),
    ("categories", "validation_error", lambda w: w.shop.set_merchant_categories(["x" * 33])),
    ("merchant.region", "validation_error", _register(region="x" * 33)),
    ("merchant.settlement_account", "validation_error", _register(settlement_account="")),
    ("number", "validation_error", lambda w: w.owner.add_card("4111", "12/39", 1, "KRW")),
    ("number", "invalid_request", lambda w: w.owner.add_card(CARD[:-1] + "2", "12/39", 1, "KRW")),
    (
        "number",
        "invalid_request",
        lambda w: w.owner.add_card(crypto.new_virtual_card_number(), "12/39", 1, "KRW"),
    ),
    ("expiry", "validation_error", lambda w: w.owner.add_card(CARD, "1239", 1, "KRW")),
    ("limit", "validation_error", lambda w: w.owner.add_card(CARD, "12/39", -1, "KRW")),
    ("balance", "validation_error", lambda w: w.owner.add_wallet(-1, "KRW")),
    ("source_id", "validation_error", lambda w: w.grant(source_id="x")),
    ("allowed_terminals", "validation_error", lambda w: w.grant(to=["x"])),
    ("allowed_terminals", "terminal_not_found", lambda w: w.grant(to=[crypto.new_id("t")])),
    ("rights.amount_cap", "validation_error", lambda w: w.grant(amount_cap=0)),
    ("rights.per_use_cap", "validation_error", lambda w: w.grant(per_use_cap=0)),
    ("rights.per_use_cap", "invalid_request", lambda w: w.grant(per_use_cap=5_001)),
    ("rights.valid_until", "validation_error", lambda w: w.grant(valid_until="soon")),
    ("rights.valid_until", "invalid_request", lambda w: w.grant(valid_until="2020-01-01T00:00Z")),
    ("rights.valid_from", "validation_error", lambda w: w.grant(valid_from="soon")),
    ("rights.purposes", "validation_error", lambda w: w.grant(purposes=[""])),
    ("rights.regions", "validation_error", lambda w: w.grant(regions=["x" * 33])),
    ("rights.merchants", "validation_error", lambda w: w.grant(merchants=["m"])),
    (
        "rights.allowance.period",
        "validation_error",
        lambda w: w.grant(allowance=_per(period="year")),
    ),
    ("rights.allowance.amount", "validation_error", lambda w: w.grant(allowance=_per(amount=0))),
    (
        "rights.allowance.amount",
        "invalid_request",
        lambda w: w.grant(amount_cap=5_000, allowance=_per(amount=5_001)),
    ),
    (
        "rights.allowance.time_zone",
        "validation_error",
        lambda w: w.grant(allowance=_per(time_zone="Mars/Olympus")),
    ),
    ("bill_id", "validation_error", lambda w: w.grant(bill_id="b")),
    ("bill_id", "bill_not_found", lambda w: w.grant(bill_id=crypto.new_id("b"))),
    ("total", "validation_error", lambda w: w.target.open_bill(total=0, currency="KRW")),
    ("amount", "validation_error", lambda w: w.shop.refund(w.payment_id, 0)),
    ("amount", "over_refundable", lambda w: w.shop.refund(w.payment_id, 10**9)),
    ("purpose", "validation_error", lambda w: w.scene.pay(100, purpose="")),
    (
        "means.own_source_id",
        "validation_error",
        lambda w: w.scene.pay(100, posted={"own_source_id": "x", "own_amount": 0}),
    ),
    ("after", "invalid_request", lambda w: w.owner.notifications(after="n_nothere")),
    (
        "Idempotency-Key",
        "invalid_request",
        lambda w: w.shop.refund(w.payment_id, 1, idempotency_key="k" * 65),
    ),
]


def _per(**changes: Any) -> dict[str, Any]:
    """A grant's allowance (``rights.allowance``), 1,000 KRW a day in Seoul, with ``changes``."""
    return {"period": "day", "amount": 1_000, "time_zone": "Asia/Seoul", **changes}


def test_every_field_the_server_validates_is_refused_here() -> None:
    assert {field for field, _, _ in REFUSALS} == set(SERVER_FIELDS)


@pytest.mark.parametrize(
    ("field", "code", "request_"),
    REFUSALS,
    ids=[f"{field}-{code}" for field, code, _ in REFUSALS],
)
def test_a_server_refusal_of_each_field_is_exit_2_with_a_sentence(
    world: World,
    capsys: pytest.CaptureFixture[str],
    field: str,
    code: str,
    request_: Request,
) -> None:
    with pytest.raises(ApiError) as refused:
        request_(world)
    error = refused.value
    assert (error.status, error.code) == (422, code), error.message
    assert ".".join(p for p in (error.field or "").split(".") if not p.isdigit()) == field
    option = SERVER_FIELDS[field][0]

    assert report(error, as_json=True) == 2
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"ok", "error", "message", "field"} and data["ok"] is False
    assert data["field"] == option and data["error"] == code
    assert data["message"].startswith(f"Invalid value for '{option}': "), data
    assert not NOT_PLAIN.search(data["message"]), data["message"]

    assert report(error, as_json=False) == 2
    assert capsys.readouterr().err.strip() == f"Error: {data['message']}"


def test_the_refusals_wrote_nothing(world: World, server: ServerProcess) -> None:
    assert world.shop.get_payment(world.payment_id)["refunded"] == 0
    assert server.audit() == []  # the ledger and the balances still agree
