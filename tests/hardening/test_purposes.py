"""Purposes the merchant cannot invent (hardening hole 3).

A grant limited to a category (restaurants, 5812) was approved at a merchant of another
category (5999) that sent ``purpose: 5812``: the purpose was neither tied to the merchant's
registered category nor covered by the target's signature. Now, against real server
processes on SQLite and PostgreSQL:

* a purpose the merchant did not register is declined (``purpose_not_registered``);
* a purpose changed after the target signed no longer matches its signature;
* a merchant's categories change only by its own signed request, and each change is logged;
* terminals of another presentation version are told to upgrade nfcpay, over the loopback
  reader, before the server is asked.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import cbor2
import httpx
import pytest

from nfcpay import crypto
from nfcpay.errors import ApiError, Declined, DecodeError
from nfcpay.money import Money
from nfcpay.records import AckRecord, ChallengeRecord, MeansRecord, decode_one
from nfcpay.terminals import exchange, merchant, target
from nfcpay.terminals.account import connect, init_terminal
from nfcpay.terminals.home import TerminalHome
from nfcpay.terminals.user import Rights, grant_record, issue
from nfcpay.testing.server import DEFAULT_MERCHANT, build_signed_means
from nfcpay.transport.reader import open_reader
from tests.support.cli import free_udp_port
from tests.support.harness import (
    DATABASES,
    Harness,
    changed_tables,
    database_url,
    harness_on,
    start_server,
)
from tests.support.records import framed
from tests.support.scenes import both
from tests.support.signing import sign

AMOUNT = 1_000
RESTAURANT, MISC = "5812", "5999"
PATH = "/v1/merchants/me/categories"


@pytest.fixture(scope="module", params=DATABASES)
def harness(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    with database_url(request.param) as db_url:
        server = start_server(tmp_path_factory.mktemp("purposes"), db_url=db_url)
        with harness_on(server) as harness:
            yield harness


# --- the purpose of a payment --------------------------------------------------------------


def test_a_merchant_cannot_claim_a_purpose_it_did_not_register(harness: Harness) -> None:
    """The attack as found: a 5999 merchant sends purpose 5812 (its target signed 5812 too)
    to use a grant limited to restaurants. Declined, and nothing changes."""
    scene = harness.scene(purposes=[RESTAURANT], merchant={"categories": [MISC]})
    before = harness.snapshot()
    claimed = scene.pay(AMOUNT, purpose=RESTAURANT)
    assert (claimed["status"], claimed["decline_code"]) == ("declined", "purpose_not_registered")
    assert claimed["message"] == (
        f"merchant {scene.merchant.merchant_id} is registered for {MISC}, "
        f"not for purpose {RESTAURANT}"
    )
    honest = scene.pay(AMOUNT)  # its own category: the grant does not allow it
    assert honest["decline_code"] == "purpose_not_allowed"
    assert changed_tables(before, harness.snapshot()) == []


def test_a_purpose_changed_after_the_target_signed_does_not_match_its_signature(
    harness: Harness,
) -> None:
    """A merchant registered for both categories challenges for 5999 and tells the server
    5812: the target's signature covers 5999, so it is declined (the owner is told of a
    forged presentation); the same payment sent as signed is approved."""
    scene = harness.scene(
        purposes=[RESTAURANT], max_uses=2, merchant={"categories": [MISC, RESTAURANT]}
    )
    challenge = secrets.token_bytes(16)
    grants = [(scene.grant_id, scene.usage_auth(), AMOUNT)]
    means = build_signed_means(
        scene.target, merchant=scene.merchant, challenge=challenge, amount=AMOUNT,
        currency="KRW", purpose=MISC, grants=grants,
    )  # fmt: skip
    before = harness.snapshot()
    altered = scene.merchant.client.authorize_payment(
        amount=AMOUNT, currency="KRW", purpose=RESTAURANT, challenge=challenge, means=means
    )
    assert (altered["status"], altered["decline_code"]) == ("declined", "bad_signature")
    assert changed_tables(before, harness.snapshot()) == ["notifications"]
    kinds = [n["kind"] for n in scene.owner.client.notifications()]
    assert kinds == ["forged_presentation"]
    assert scene.pay(AMOUNT, purpose=RESTAURANT)["status"] == "approved"


# --- changing a merchant's categories ------------------------------------------------------


def test_changing_categories_is_the_merchants_own_signed_and_logged_operation(
    harness: Harness,
) -> None:
    scene = harness.scene(purposes=[RESTAURANT], max_uses=3, merchant={"categories": [MISC]})
    shop, other_shop = scene.merchant, harness.terminal("merchant")
    assert scene.pay(AMOUNT, purpose=RESTAURANT)["decline_code"] == "purpose_not_registered"

    changed = shop.client.set_merchant_categories([MISC, RESTAURANT])

    assert changed["categories"] == [MISC, RESTAURANT]
    registered, added = changed["changes"]
    assert (registered["old"], registered["new"]) == ([], [MISC])
    assert (added["old"], added["new"]) == ([MISC], [MISC, RESTAURANT])
    assert {registered["terminal_id"], added["terminal_id"]} == {shop.terminal_id}
    assert shop.client.me()["merchant"]["categories"] == [MISC, RESTAURANT]
    assert other_shop.client.merchant_categories()["categories"] == [RESTAURANT]
    assert scene.pay(AMOUNT, purpose=RESTAURANT)["status"] == "approved"
    # The same set again (a retry) changes and logs nothing.
    assert shop.client.set_merchant_categories([MISC, RESTAURANT]) == changed

    shop.client.set_merchant_categories([MISC])
    assert scene.pay(AMOUNT, purpose=RESTAURANT)["decline_code"] == "purpose_not_registered"
    assert len(shop.client.merchant_categories()["changes"]) == 3


def _put(harness: Harness, headers: dict[str, str], raw: bytes) -> httpx.Response:
    return harness.http.put(harness.url + PATH, content=raw, headers=headers)


def test_categories_are_changed_by_no_one_else_and_by_no_unsigned_or_altered_request(
    harness: Harness,
) -> None:
    scene = harness.scene(merchant={"categories": [MISC]})
    shop = scene.merchant
    raw = json.dumps({"categories": [RESTAURANT]}).encode()
    before = harness.snapshot()
    for who in (scene.owner, scene.target):  # other terminals: only merchants have categories
        with pytest.raises(ApiError) as caught:
            who.client.set_merchant_categories([RESTAURANT])
        assert (caught.value.status, caught.value.code) == (403, "forbidden")
        assert caught.value.message == "only merchant terminals change a merchant's categories"
    refused = {
        "unsigned": {"Content-Type": "application/json", "X-Nfcpay-Terminal": shop.terminal_id},
        "another key": sign(shop, "PUT", PATH, raw, key=crypto.generate_terminal_key()),
        "body changed after signing": sign(
            shop, "PUT", PATH, b"", signed_body=b'{"categories":["x"]}'
        ),
    }
    for what, headers in refused.items():
        assert _put(harness, headers, raw).status_code == 401, what
    for body, field in [([], "categories"), ([RESTAURANT, RESTAURANT], "categories")]:
        with pytest.raises(ApiError) as invalid:
            shop.client.set_merchant_categories(body)
        assert (invalid.value.status, invalid.value.field) == (422, field)
    assert changed_tables(before, harness.snapshot()) == []
    assert shop.client.merchant_categories()["categories"] == [MISC]


# --- terminals of another presentation version, at the counter ------------------------------


def counter(harness: Harness, tmp_path: Path) -> dict[str, TerminalHome]:
    """A user, a target holding a grant of 50,000 KRW from it, and a shop (category 5812)."""
    homes = {}
    for name, role in [("user", "user"), ("target", "target"), ("shop", "merchant")]:
        homes[name] = TerminalHome(tmp_path / name)
        details = DEFAULT_MERCHANT if role == "merchant" else None
        init_terminal(homes[name], role=role, label=name, server_url=harness.url, merchant=details)
    target_id = homes["target"].identity().terminal_id
    with connect(homes["user"]) as user:
        user.add_card("4111111111111111", "12/39", 100_000, "KRW")
        grant = issue(homes["user"], user, to=target_id, rights=Rights(amount_cap=50_000))
    record = grant_record(
        homes["user"].get("grants", grant["grant_id"]), homes["user"].identity(), target_id
    )
    homes["target"].put("grants", record.grant_id, target.held_entry(record))
    return homes


def version_1(means: MeansRecord) -> bytes:
    """``means`` as nfcpay before version 2 sends it: payload version 1."""
    return framed("means", bytes([1]) + cbor2.dumps(means.to_wire(), canonical=True))


@pytest.mark.nfc_sim
def test_an_older_target_is_told_to_upgrade_at_the_counter(
    harness: Harness, tmp_path: Path
) -> None:
    """A target on nfcpay before version 2 answers with a version-1 means: the merchant
    refuses it before asking the server, and both sides read which one to upgrade."""
    homes = counter(harness, tmp_path)
    device = f"loopback:{free_udp_port()}"
    before = harness.snapshot()

    def shop_charges() -> str:
        with connect(homes["shop"]) as client, open_reader(device) as reader:
            try:
                merchant.charge(homes["shop"], client, reader, Money(AMOUNT, "KRW"), timeout=20)
            except DecodeError as exc:
                return exc.message
        return "charged"

    def old_target_pays() -> AckRecord:
        home = homes["target"]
        with open_reader(device) as reader, reader.tap("pay", offer=False, timeout=20) as ch:
            exchange.send(ch, exchange.hello_from(home, home.identity()))
            challenge = exchange.receive(ch, ChallengeRecord)
            shares = target.choose_shares(home, challenge)
            means = target.sign_means(home, home.identity(), challenge, shares)
            ch.send(version_1(means))
            return decode_one(ch.receive(exchange.RESULT_TIMEOUT), AckRecord)

    said, refusal = both(shop_charges, old_target_pays)
    assert said.endswith("upgrade nfcpay on the sending terminal")
    assert (refusal.accepted, refusal.code) == (False, "unsupported_version")
    assert (
        refusal.message is not None and "upgrade nfcpay on the sending terminal" in refusal.message
    )
    assert changed_tables(before, harness.snapshot()) == []


@pytest.mark.nfc_sim
def test_a_target_refuses_an_older_merchants_challenge_without_a_purpose(
    harness: Harness, tmp_path: Path
) -> None:
    """A merchant on nfcpay before version 2 may send no purpose: the target signs nothing and
    tells it to upgrade."""
    homes = counter(harness, tmp_path)
    device = f"loopback:{free_udp_port()}"
    shop_id = str(homes["shop"].identity().merchant_id)
    old = ChallengeRecord(
        merchant_id=shop_id, currency="KRW", amount=AMOUNT, nonce=secrets.token_bytes(16)
    )

    def old_shop() -> AckRecord:
        with open_reader(device) as reader, reader.tap("pay", offer=True, timeout=20) as ch:
            ch.receive(exchange.REPLY_TIMEOUT)
            exchange.send(ch, old)
            return decode_one(ch.receive(exchange.REPLY_TIMEOUT), AckRecord)

    def target_pays() -> Declined:
        with open_reader(device) as reader, pytest.raises(Declined) as caught:
            target.pay(homes["target"], reader, timeout=20)
        return caught.value

    refusal, declined = both(old_shop, target_pays)
    assert declined.code == refusal.code == "unsupported_version"
    assert declined.message.endswith("upgrade nfcpay on the merchant terminal")
    assert refusal.message == declined.message
