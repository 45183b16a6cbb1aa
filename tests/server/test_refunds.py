"""Refunds: reverse the ledger, restore funding, give back grant amount pro rata, not the use."""

from __future__ import annotations

import pytest

from nfcpay.errors import ApiError
from tests.support.harness import Api


def test_partial_then_full_refund(api: Api) -> None:
    scene = api.scene(source={"kind": "wallet", "balance": 10_000}, amount_cap=5_000)
    paid = scene.pay(4_000)
    client = scene.merchant.client
    first = client.refund(paid["payment_id"], 1_500)
    assert (first["amount"], first["remaining_refundable"]) == (1_500, 2_500)
    grant = scene.owner.client.get_grant(scene.grant_id)
    assert (grant["remaining_amount"], grant["remaining_uses"]) == (2_500, 0)
    assert grant["status"] == "exhausted"
    rest = client.refund(paid["payment_id"])
    assert (rest["amount"], rest["remaining_refundable"]) == (2_500, 0)
    assert scene.owner.client.list_sources()[0]["balance"] == 10_000
    assert client.get_payment(paid["payment_id"])["refunded"] == 4_000
    assert api.audit() == []
    with pytest.raises(ApiError) as caught:
        client.refund(paid["payment_id"], 1)
    assert (caught.value.status, caught.value.code) == (409, "fully_refunded")


def test_refund_is_pro_rata_across_shares(api: Api) -> None:
    scene = api.scene(amount_cap=10_000)
    own = scene.target.client.add_wallet(10_000, "KRW")
    paid = scene.pay(
        4_000,
        grants=[(scene.grant_id, scene.usage_auth(), 3_000)],
        own_source_id=own["source_id"],
        own_amount=1_000,
    )
    scene.merchant.client.refund(paid["payment_id"], 2_000)
    assert scene.owner.client.get_grant(scene.grant_id)["remaining_amount"] == 8_500
    assert scene.target.client.list_sources()[0]["balance"] == 9_500
    card = scene.owner.client.list_sources()[0]
    assert card["outstanding"] == 1_500
    assert api.audit() == []


def test_refund_over_refundable_and_foreign_payments(api: Api) -> None:
    scene = api.scene()
    paid = scene.pay(1_000)
    before = api.snapshot()
    with pytest.raises(ApiError) as over:
        scene.merchant.client.refund(paid["payment_id"], 1_001)
    assert (over.value.status, over.value.code, over.value.field) == (
        422,
        "over_refundable",
        "amount",
    )
    other_shop = api.terminal("merchant")
    with pytest.raises(ApiError) as foreign:
        other_shop.client.refund(paid["payment_id"], 10)
    assert foreign.value.status == 404
    with pytest.raises(ApiError) as not_merchant:
        scene.owner.client.refund(paid["payment_id"], 10)
    assert not_merchant.value.status == 403
    with pytest.raises(ApiError) as peek:
        other_shop.client.get_payment(paid["payment_id"])
    assert peek.value.status == 404
    assert api.snapshot() == before


def test_refund_replay_and_conflict(api: Api) -> None:
    scene = api.scene()
    paid = scene.pay(1_000)
    client = scene.merchant.client
    first = client.refund(paid["payment_id"], 300, idempotency_key="refund-1")
    again = client.refund(paid["payment_id"], 300, idempotency_key="refund-1")
    assert again["refund_id"] == first["refund_id"] and again["replayed"] is True
    with pytest.raises(ApiError) as caught:
        client.refund(paid["payment_id"], 400, idempotency_key="refund-1")
    assert (caught.value.status, caught.value.code) == (409, "idempotency_conflict")
    assert client.get_payment(paid["payment_id"])["refunded"] == 300
