"""Replay (issue 6): captured payment means, captured grants and signed API requests, used
again, charge nothing; the owner is told where the rules say so.

Already covered elsewhere, not repeated: a means signed for one counter posted at another
(never used before) and a re-signed means on a used challenge
(tests/server/acceptance/test_declines.py), a stranger presenting a grant with a usage-auth
made for it, and the replay of a signed payment, revocation and refund request
(test_access.py).

Added here, against one real server process:

* a means captured from an **approved** payment, replayed at the same and at another
  merchant, on the same and on a fresh challenge;
* a captured grant (usage-auth and all) presented by another terminal under its own id,
  and under the allowed terminal's id it forged;
* the replay of every other state-changing API request (the set comes from the server's
  OpenAPI document, so a new route needs a case);
* over the loopback reader with the real merchant terminal: a means skimmed by a fake
  merchant, then replayed at the real counter, and a copied grant presented there.

Owner notifications, by the server's rules: a presentation by a terminal the grant is not
bound to notifies the owner (``terminal_not_allowed``); so does a genuine usage-auth without
its terminal's signature (``forged_presentation``: a copy, or a capture replayed on another
challenge); a used challenge does not (the means were genuine, only late).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nfcpay import crypto
from nfcpay.errors import Declined
from nfcpay.money import Money
from nfcpay.records import ChallengeRecord, MeansRecord, ResultRecord, decode_one
from nfcpay.records.presentation import presentation
from nfcpay.terminals import exchange, merchant, target
from nfcpay.terminals.account import connect, init_terminal
from nfcpay.terminals.home import TerminalHome
from nfcpay.terminals.user import Rights, grant_record, issue
from nfcpay.testing.server import DEFAULT_MERCHANT, PaymentScene, Terminal, signed_means
from nfcpay.transport.reader import open_reader
from tests.support.cli import free_udp_port
from tests.support.harness import Harness, changed_tables, harness_on, start_server
from tests.support.scenes import both
from tests.support.signing import sign

AMOUNT = 1_000
Json = dict[str, Any]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with harness_on(start_server(tmp_path_factory.mktemp("replay"))) as harness:
        yield harness


def post_means(shop: Terminal, challenge: bytes, means: Json) -> Json:
    return shop.client.authorize_payment(
        amount=AMOUNT, currency="KRW", challenge=challenge, means=means
    )


def new_notes(scene: PaymentScene, seen: set[str]) -> list[Json]:
    return [n for n in scene.owner.client.notifications() if n["notification_id"] not in seen]


# --- captured payment means ----------------------------------------------------------------


@pytest.mark.parametrize("counter", ["same_merchant", "other_merchant"])
@pytest.mark.parametrize("challenge", ["same_challenge", "fresh_challenge"])
def test_means_captured_from_an_approved_payment_is_worthless(
    harness: Harness, counter: str, challenge: str
) -> None:
    scene = harness.scene(max_uses=5)
    nonce, means = scene.signed_means(AMOUNT)
    assert post_means(scene.merchant, nonce, means)["status"] == "approved"
    shop = scene.merchant if counter == "same_merchant" else harness.terminal("merchant")
    replay_nonce = nonce if challenge == "same_challenge" else secrets.token_bytes(16)
    seen = {n["notification_id"] for n in scene.owner.client.notifications()}
    before = harness.snapshot()

    answer = post_means(shop, replay_nonce, means)

    expected = (
        "challenge_reused"
        if shop is scene.merchant and nonce == replay_nonce
        else ("bad_signature")
    )
    assert (answer["status"], answer["decline_code"]) == ("declined", expected)
    told = ["forged_presentation"] if expected == "bad_signature" else []
    assert changed_tables(before, harness.snapshot()) == (["notifications"] if told else [])
    assert [n["kind"] for n in new_notes(scene, seen)] == told


# --- captured grant, other terminal --------------------------------------------------------


def copied_grant_means(
    scene: PaymentScene, mallory: Terminal, claimed: str, usage_auth: bytes | None = None
) -> tuple[bytes, Json]:
    """Mallory's means with Bob's grant and Bob's usage-auth (copied from Bob's terminal,
    unless ``usage_auth`` is given), presented under ``claimed`` and signed with her own
    key, as a forger can."""
    nonce = secrets.token_bytes(16)
    means = signed_means(
        mallory.private_key,
        presenting_terminal=claimed,
        merchant_id=str(scene.merchant.merchant_id),
        challenge=nonce,
        amount=AMOUNT,
        currency="KRW",
        purpose=scene.merchant.primary_category,
        grants=[(scene.grant_id, usage_auth or scene.usage_auth(), AMOUNT)],
    )
    return nonce, means


def test_copied_grant_under_the_copiers_own_id_notifies_the_owner(harness: Harness) -> None:
    scene, mallory = harness.scene(), harness.terminal("target")
    nonce, means = copied_grant_means(scene, mallory, mallory.terminal_id)
    seen = {n["notification_id"] for n in scene.owner.client.notifications()}
    before = harness.snapshot()

    answer = post_means(scene.merchant, nonce, means)

    assert (answer["status"], answer["decline_code"]) == ("declined", "terminal_not_allowed")
    assert changed_tables(before, harness.snapshot()) == ["notifications"]
    (note,) = new_notes(scene, seen)
    assert note["kind"] == "terminal_not_allowed"
    assert (note["grant_id"], note["terminal_id"]) == (scene.grant_id, mallory.terminal_id)


def test_copied_grant_under_a_forged_terminal_id_charges_nothing(harness: Harness) -> None:
    scene, mallory = harness.scene(), harness.terminal("target")
    nonce, means = copied_grant_means(scene, mallory, scene.target.terminal_id)
    before = harness.snapshot()

    answer = post_means(scene.merchant, nonce, means)

    assert (answer["status"], answer["decline_code"]) == ("declined", "bad_signature")
    assert set(changed_tables(before, harness.snapshot())) <= {"notifications"}


def test_copied_grant_under_a_forged_terminal_id_notifies_the_owner(harness: Harness) -> None:
    scene, mallory = harness.scene(), harness.terminal("target")
    nonce, means = copied_grant_means(scene, mallory, scene.target.terminal_id)
    seen = {n["notification_id"] for n in scene.owner.client.notifications()}
    post_means(scene.merchant, nonce, means)
    (note,) = new_notes(scene, seen)
    assert (note["kind"], note["grant_id"]) == ("forged_presentation", scene.grant_id)
    assert note["terminal_id"] == scene.target.terminal_id  # the id the forger claimed


def test_made_up_usage_auth_under_a_forged_id_tells_nobody(harness: Harness) -> None:
    """Knowing a grant id is not enough to make its owner's phone ring."""
    scene, mallory = harness.scene(), harness.terminal("target")
    made_up = secrets.token_bytes(32)
    nonce, means = copied_grant_means(scene, mallory, scene.target.terminal_id, made_up)
    seen = {n["notification_id"] for n in scene.owner.client.notifications()}
    answer = post_means(scene.merchant, nonce, means)
    assert (answer["status"], answer["decline_code"]) == ("declined", "bad_signature")
    assert new_notes(scene, seen) == []


# --- signed API requests -------------------------------------------------------------------

#: Replays already tested in test_access.py::test_replayed_request_is_refused.
REPLAYED_ELSEWHERE = {
    ("POST", "/v1/payments"),
    ("POST", "/v1/grants/{grant_id}/revoke"),
    ("POST", "/v1/grants/{grant_id}/confirm"),
    ("POST", "/v1/payments/{payment_id}/refunds"),
}


def replay_calls(harness: Harness) -> dict[tuple[str, str], tuple[Terminal | None, str, Json, Any]]:
    """(method, route) → (signer, path, body, registering key) of one valid call."""
    scene = harness.scene()
    owner, source = scene.owner, scene.source["source_id"]
    key = crypto.generate_terminal_key()
    registration = {
        "role": "target",
        "label": "replayed",
        "public_key": crypto.b64e(crypto.public_key_bytes(key)),
    }
    grant = {
        "source_id": source,
        "allowed_terminals": [scene.target.terminal_id],
        "currency": "KRW",
        "rights": {"amount_cap": 100},
    }
    wallet = {"kind": "wallet", "balance": 100, "currency": "KRW"}
    target = scene.target
    delivery = owner.client.send_grant(scene.grant_id, target.terminal_id, scene.handoff())
    other = scene.another_grant(amount_cap=100)
    sent = {
        "grant_id": other.grant_id,
        "to": target.terminal_id,
        "record": crypto.b64e(other.handoff()),
    }
    ack = f"/v1/deliveries/{delivery['delivery_id']}/ack"
    return {
        ("POST", "/v1/terminals"): (None, "/v1/terminals", registration, key),
        ("POST", "/v1/funding-sources"): (owner, "/v1/funding-sources", wallet, None),
        ("PATCH", "/v1/funding-sources/{source_id}"): (
            owner, f"/v1/funding-sources/{source}", {"status": "dormant"}, None,
        ),
        ("POST", "/v1/grants"): (owner, "/v1/grants", grant, None),
        ("PUT", "/v1/merchants/me/categories"): (
            scene.merchant, "/v1/merchants/me/categories", {"categories": ["5812", "5999"]}, None,
        ),
        ("POST", "/v1/bills"): (scene.target, "/v1/bills", {"total": 100, "currency": "KRW"}, None),
        ("POST", "/v1/deliveries"): (owner, "/v1/deliveries", sent, None),
        ("POST", "/v1/deliveries/{delivery_id}/ack"): (target, ack, {}, None),
    }  # fmt: skip


def mutating_routes(harness: Harness) -> set[tuple[str, str]]:
    spec = harness.http.get(f"{harness.url}/openapi.json").json()
    return {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method.upper() != "GET"
    }


def test_every_state_changing_route_has_a_replay_case(harness: Harness) -> None:
    assert set(replay_calls(harness)) | REPLAYED_ELSEWHERE == mutating_routes(harness)


@pytest.mark.parametrize(
    "route",
    [
        ("POST", "/v1/terminals"),
        ("POST", "/v1/funding-sources"),
        ("PATCH", "/v1/funding-sources/{source_id}"),
        ("POST", "/v1/grants"),
        ("PUT", "/v1/merchants/me/categories"),
        ("POST", "/v1/bills"),
        ("POST", "/v1/deliveries"),
        ("POST", "/v1/deliveries/{delivery_id}/ack"),
    ],
    ids=lambda route: f"{route[0]} {route[1]}",
)
def test_replayed_signed_request_is_refused(harness: Harness, route: tuple[str, str]) -> None:
    """The same signed request twice: the first is done, the copy changes nothing."""
    signer, path, body, key = replay_calls(harness)[route]
    raw = json.dumps(body).encode()
    headers = sign(signer, route[0], path, raw, key=key)
    first = harness.http.request(route[0], harness.url + path, content=raw, headers=headers)
    assert first.status_code in (200, 201), first.text
    before = harness.snapshot()

    copy = harness.http.request(route[0], harness.url + path, content=raw, headers=headers)

    assert copy.status_code == 401, copy.text
    assert copy.json()["error"] == "authentication_failed" and "replay" in copy.json()["message"]
    assert changed_tables(before, harness.snapshot()) == []


# --- over the loopback reader, at the real merchant terminal -------------------------------


@pytest.mark.nfc_sim
def test_means_skimmed_by_a_fake_merchant_is_refused_at_the_real_counter(
    harness: Harness, tmp_path: Path
) -> None:
    """Mallory's reader poses as the shop; Bob taps it and signs her challenge. She then taps
    the real shop and plays back Bob's hello and means, byte for byte: declined."""
    homes = {}
    for name, role in [("alice", "user"), ("bob", "target"), ("shop", "merchant")]:
        homes[name] = TerminalHome(tmp_path / name)
        details = DEFAULT_MERCHANT if role == "merchant" else None
        init_terminal(homes[name], role=role, label=name, server_url=harness.url, merchant=details)
    bob_id = homes["bob"].identity().terminal_id
    shop_id = str(homes["shop"].identity().merchant_id)
    with connect(homes["alice"]) as alice, connect(homes["shop"]) as shop:
        alice.add_card("4111111111111111", "12/39", 100_000, "KRW")
        grant = issue(homes["alice"], alice, to=bob_id, rights=Rights(amount_cap=50_000))
        entry = homes["alice"].get("grants", grant["grant_id"])
        record = grant_record(entry, homes["alice"].identity(), bob_id)
        homes["bob"].put("grants", record.grant_id, target.held_entry(record))
        device = f"loopback:{free_udp_port()}"

        skim = ChallengeRecord(
            merchant_id=shop_id,
            currency="KRW",
            amount=AMOUNT,
            nonce=secrets.token_bytes(16),
            purpose=DEFAULT_MERCHANT["categories"][0],
        )

        def fake_shop() -> tuple[bytes, bytes]:
            with open_reader(device) as reader, reader.tap("pay", offer=True, timeout=20) as ch:
                hello = ch.receive(exchange.REPLY_TIMEOUT)
                exchange.send(ch, skim)
                means = ch.receive(exchange.REPLY_TIMEOUT)
                exchange.refuse(ch, "reader_error", "please tap again")
                return hello, means

        def bob_pays() -> str:
            with open_reader(device) as reader:
                try:
                    target.pay(homes["bob"], reader, timeout=20)
                except Declined as exc:
                    return exc.code
            return "paid"

        (hello, means), bob = both(fake_shop, bob_pays)
        assert bob == "reader_error"
        assert signed_by(homes["bob"], decode_one(means, MeansRecord), skim)  # a real capture
        before = harness.snapshot()

        def real_shop() -> merchant.Charge:
            with open_reader(device) as reader:
                return merchant.charge(
                    homes["shop"], shop, reader, Money(AMOUNT, "KRW"), timeout=20
                )

        def mallory_replays() -> ResultRecord:
            with open_reader(device) as reader, reader.tap("pay", offer=False, timeout=20) as ch:
                ch.send(hello)
                exchange.receive(ch, ChallengeRecord)
                ch.send(means)
                return exchange.receive(ch, ResultRecord, exchange.RESULT_TIMEOUT)

        charge, result = both(real_shop, mallory_replays)
    assert (charge.status, charge.decline_code) == ("declined", "bad_signature")
    assert (result.approved, result.decline_code) == (False, "bad_signature")
    assert changed_tables(before, harness.snapshot()) == ["notifications"]  # Alice is told


def signed_by(home: TerminalHome, means: MeansRecord, challenge: ChallengeRecord) -> bool:
    """Whether ``means`` carries a valid signature of ``home``'s key over ``challenge``."""
    message = presentation(challenge, means).message()
    public_key = crypto.public_key_bytes(home.private_key())
    return crypto.verify_signature(public_key, means.signature, message)
