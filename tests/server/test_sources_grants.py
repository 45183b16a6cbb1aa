"""Terminals, funding sources and grant issuance: ownership, refusals, secrecy at rest."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from nfcpay import crypto
from nfcpay.errors import ApiError
from tests.support.harness import Api

CARD = "4111111111111111"


def test_merchant_registration_needs_merchant_details(api: Api) -> None:
    with pytest.raises(ApiError) as caught:
        api.terminal("merchant", merchant={"name": ""})
    assert caught.value.status == 422
    shop = api.terminal("merchant")
    me = shop.client.me()
    assert me["merchant_id"].startswith("m_")
    assert me["merchant"]["category"] == "5812"


def test_card_number_is_masked_and_encrypted_at_rest(api: Api) -> None:
    user = api.terminal()
    card = user.client.add_card(CARD, "12/39", 50_000, "KRW")
    assert card["masked"] == "411111******1111"
    assert CARD not in json.dumps(card) + json.dumps(user.client.list_sources())
    stored = api.server.query(
        lambda tx: tx.one(
            "SELECT card_number_enc FROM funding_sources WHERE source_id = ?",
            (card["source_id"],),
        )
    )
    blob = bytes(stored["card_number_enc"])
    assert CARD.encode() not in blob
    assert api.runtime.cipher.decrypt(blob, card["source_id"]) == CARD


@pytest.mark.parametrize(
    ("number", "field"),
    [
        ("4111111111111112", "number"),  # Luhn
        (crypto.new_virtual_card_number(), "number"),  # the virtual range
        ("41111", "number"),  # too short
    ],
)
def test_bad_card_numbers_are_refused(api: Api, number: str, field: str) -> None:
    user = api.terminal()
    with pytest.raises(ApiError) as caught:
        user.client.add_card(number, "12/39", 1_000, "KRW")
    assert (caught.value.status, caught.value.field) == (422, field)
    assert user.client.list_sources() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "wallet", "balance": -1, "currency": "KRW"}, "balance"),
        ({"kind": "wallet", "balance": 1.5, "currency": "KRW"}, "balance"),
        ({"kind": "wallet", "balance": 10, "currency": "XXX"}, "currency"),
        ({"kind": "bank", "currency": "KRW"}, "balance"),
        ({"kind": "card", "number": CARD, "limit": 5, "currency": "KRW"}, "expiry"),
    ],
)
def test_bad_sources_name_the_field(api: Api, body: dict[str, object], field: str) -> None:
    user = api.terminal()
    with pytest.raises(ApiError) as caught:
        user.client._call("POST", "/v1/funding-sources", body)
    assert (caught.value.status, caught.value.field) == (422, field)


def test_sources_are_private(api: Api) -> None:
    alice, bob, shop = api.terminal(), api.terminal(), api.terminal("merchant")
    wallet = alice.client.add_wallet(1_000, "KRW")
    with pytest.raises(ApiError) as caught:
        bob.client.set_source_status(wallet["source_id"], "dormant")
    assert caught.value.status == 404
    assert bob.client.list_sources() == []
    with pytest.raises(ApiError) as merchant:
        shop.client.add_wallet(1_000, "KRW")
    assert merchant.value.status == 403


def test_closed_source_stays_closed(api: Api) -> None:
    user = api.terminal()
    wallet = user.client.add_wallet(1_000, "KRW")
    assert user.client.set_source_status(wallet["source_id"], "closed")["status"] == "closed"
    with pytest.raises(ApiError) as caught:
        user.client.set_source_status(wallet["source_id"], "active")
    assert (caught.value.status, caught.value.code) == (409, "source_closed")


def test_grant_issue_returns_auth_code_once(api: Api) -> None:
    scene = api.scene()
    grant = scene.grant
    number = grant["virtual_card_number"]
    assert crypto.luhn_valid(number) and crypto.is_virtual_card_number(number)
    assert grant["status"] == "active"
    shown = scene.owner.client.get_grant(scene.grant_id)
    listed = scene.owner.client.list_grants()
    text = json.dumps([shown, listed])
    assert "auth_code" not in text
    assert crypto.b64e(scene.auth_code) not in text
    assert shown["source_id"] == scene.source["source_id"]


def test_target_sees_a_limited_view_and_strangers_nothing(api: Api) -> None:
    scene = api.scene()
    view = scene.target.client.get_grant(scene.grant_id)
    assert "source_id" not in view
    assert [g["grant_id"] for g in scene.target.client.list_grants()] == [scene.grant_id]
    stranger = api.terminal()
    with pytest.raises(ApiError) as caught:
        stranger.client.get_grant(scene.grant_id)
    assert caught.value.status == 404
    with pytest.raises(ApiError) as revoke:
        stranger.client.revoke_grant(scene.grant_id)
    assert revoke.value.status == 404
    with pytest.raises(ApiError) as by_target:
        scene.target.client.revoke_grant(scene.grant_id)
    assert by_target.value.status == 403
    assert scene.owner.client.get_grant(scene.grant_id)["status"] == "active"


def test_revoke_notifies_owner(api: Api) -> None:
    scene = api.scene()
    assert scene.owner.client.revoke_grant(scene.grant_id)["status"] == "revoked"
    assert [n["kind"] for n in scene.owner.client.notifications()] == ["grant_revoked"]


@pytest.mark.parametrize("status", ["dormant", "closed"])
def test_inactive_source_refuses_grants(api: Api, status: str) -> None:
    scene = api.scene()
    target = scene.target.terminal_id
    source_id = scene.source["source_id"]
    scene.owner.client.set_source_status(source_id, status)
    with pytest.raises(ApiError) as caught:
        scene.owner.client.issue_grant(source_id, [target], amount_cap=10, currency="KRW")
    assert (caught.value.status, caught.value.code) == (409, f"source_{status}")


def test_an_expired_card_is_refused_and_nothing_is_stored(api: Api) -> None:
    user = api.terminal()
    before = api.snapshot()
    with pytest.raises(ApiError) as caught:
        user.client.add_card(CARD, "01/20", 1_000, "KRW")
    error = caught.value
    assert (error.status, error.code, error.field) == (422, "invalid_request", "expiry")
    assert "expired at the end of 01/20" in error.message
    assert api.snapshot() == before


def test_a_card_that_expired_since_it_was_added_refuses_grants(api: Api) -> None:
    user, target = api.terminal(), api.terminal("target")
    card = user.client.add_card(CARD, "12/39", 1_000, "KRW")
    api.server.query(  # months pass: the card's last valid month is behind the server clock
        lambda tx: tx.execute(
            "UPDATE funding_sources SET expiry = '01/20' WHERE source_id = ?",
            (card["source_id"],),
        )
    )
    assert user.client.list_sources()[0]["expired"] is True
    with pytest.raises(ApiError) as caught:
        user.client.issue_grant(
            card["source_id"], [target.terminal_id], amount_cap=10, currency="KRW"
        )
    assert caught.value.code == "source_expired"


def test_invalid_rights_name_the_field(api: Api) -> None:
    scene = api.scene()
    client, src = scene.owner.client, scene.source["source_id"]
    target = [scene.target.terminal_id]
    past = datetime.now(UTC) - timedelta(minutes=1)
    cases = [
        ({"valid_until": past}, "rights.valid_until"),
        ({"per_use_cap": 200, "amount_cap": 100}, "rights.per_use_cap"),
        ({"amount_cap": 0}, "rights.amount_cap"),
        ({"max_uses": 0}, "rights.max_uses"),
        ({"purposes": []}, "rights.purposes"),
    ]
    for rights, field in cases:
        kwargs = {"amount_cap": 100, **rights}
        with pytest.raises(ApiError) as caught:
            client.issue_grant(src, target, currency="KRW", **kwargs)  # type: ignore[arg-type]
        assert (caught.value.status, caught.value.field) == (422, field), rights
    with pytest.raises(ApiError) as unknown:
        client.issue_grant(src, ["t_nobody"], amount_cap=10, currency="KRW")
    assert (unknown.value.code, unknown.value.field) == ("terminal_not_found", "allowed_terminals")
    with pytest.raises(ApiError) as currency:
        client.issue_grant(src, target, amount_cap=10, currency="USD")
    assert currency.value.code == "currency_mismatch"
