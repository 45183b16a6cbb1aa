"""Who may read another terminal's public profile (label, role, merchant name, key
fingerprint): only a party with it to a grant, a payment, a bill or a declined attempt on
one's grant; anyone else gets the 404 of a terminal that does not exist."""

from __future__ import annotations

import pytest

from nfcpay import crypto
from nfcpay.errors import ApiError
from nfcpay.testing.server import Terminal
from tests.support.harness import Api


def _hidden(reader: Terminal, other_id: str) -> tuple[int, str, str]:
    """The refusal ``reader`` gets for ``other_id``'s profile, with the id masked."""
    read = (
        reader.client.merchant_profile
        if other_id.startswith("m_")
        else reader.client.terminal_profile
    )
    with pytest.raises(ApiError) as caught:
        read(other_id)
    error = caught.value
    return error.status, error.code, error.message.replace(other_id, "?")


def _as_unknown(reader: Terminal, other_id: str) -> None:
    """``reader`` is refused ``other_id`` exactly as an id no terminal has."""
    unknown = crypto.new_id(other_id[0])
    assert _hidden(reader, other_id) == _hidden(reader, unknown)
    assert _hidden(reader, other_id)[:2] == (404, "terminal_not_found")


def test_a_grants_owner_and_its_target_read_each_other(api: Api) -> None:
    scene = api.scene()
    owner, target = scene.owner, scene.target
    profile = owner.client.terminal_profile(target.terminal_id)
    assert profile == {
        "terminal_id": target.terminal_id,
        "role": "target",
        "label": target.info["label"],
        "public_key_fingerprint": target.info["public_key_fingerprint"],
    }
    assert target.client.terminal_profile(owner.terminal_id)["label"] == owner.info["label"]
    assert owner.client.terminal_profile(owner.terminal_id)["terminal_id"] == owner.terminal_id


def test_the_merchant_becomes_a_party_by_the_payment(api: Api) -> None:
    scene = api.scene(max_uses=2)
    shop, target, owner = scene.merchant, scene.target, scene.owner
    _as_unknown(target, shop.merchant_id)
    _as_unknown(shop, target.terminal_id)
    _as_unknown(owner, shop.terminal_id)
    assert scene.pay(1_000)["status"] == "approved"
    seen = target.client.merchant_profile(shop.merchant_id)
    assert (seen["terminal_id"], seen["merchant_id"], seen["merchant_name"]) == (
        shop.terminal_id,
        shop.merchant_id,
        "Test Bistro",
    )
    assert owner.client.terminal_profile(shop.terminal_id)["merchant_name"] == "Test Bistro"
    assert shop.client.terminal_profile(target.terminal_id)["label"] == target.info["label"]
    assert shop.client.terminal_profile(owner.terminal_id)["role"] == "user"


def test_strangers_see_nothing(api: Api) -> None:
    scene = api.scene()
    assert scene.pay(1_000)["status"] == "approved"
    stranger, other_shop = api.terminal("user"), api.terminal("merchant")
    for party in (scene.owner, scene.target, scene.merchant):
        _as_unknown(stranger, party.terminal_id)
        _as_unknown(other_shop, party.terminal_id)
        _as_unknown(party, stranger.terminal_id)
    _as_unknown(stranger, scene.merchant.merchant_id)


def test_two_targets_of_one_grant_are_not_parties_with_each_other(api: Api) -> None:
    scene = api.scene()
    second = api.terminal("target")
    scene.owner.client.issue_grant(
        scene.source["source_id"],
        [scene.target.terminal_id, second.terminal_id],
        amount_cap=100,
        currency="KRW",
    )
    _as_unknown(second, scene.target.terminal_id)
    assert second.client.terminal_profile(scene.owner.terminal_id)["role"] == "user"
    [shared] = [g for g in second.client.list_grants() if len(g["allowed"]) == 2]
    labels = {a["terminal_id"]: a["label"] for a in shared["allowed"]}
    assert labels == {scene.target.terminal_id: None, second.terminal_id: second.info["label"]}
    assert shared["issuing_label"] == scene.owner.info["label"]


def test_an_owner_reads_who_tried_its_grant_but_not_the_other_way(api: Api) -> None:
    """The declined attempt is in the owner's notifications, names and all; it tells the
    terminal that tried nothing of the owner."""
    scene = api.scene()
    mallory = api.terminal("target", label="Mallory")
    assert scene.pay(800, presenter=mallory)["decline_code"] == "terminal_not_allowed"
    assert scene.owner.client.terminal_profile(mallory.terminal_id)["label"] == "Mallory"
    assert scene.owner.client.merchant_profile(scene.merchant.merchant_id)["merchant_name"]
    _as_unknown(mallory, scene.owner.terminal_id)
    _as_unknown(scene.merchant, mallory.terminal_id)
