"""Idempotency keys: a retry replays the first answer; another body under the key is 409;
parallel requests with one key charge once."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest

from nfcpay.errors import ApiError
from tests.support.harness import Api


def test_same_key_same_body_replays_without_charging(api: Api) -> None:
    scene = api.scene(max_uses=5)
    challenge = secrets.token_bytes(16)
    first = scene.pay(700, challenge=challenge, idempotency_key="pay-1")
    snapshot = api.snapshot()
    # Ed25519 signatures are deterministic: the target's re-signed means are byte-identical.
    again = scene.pay(700, challenge=challenge, idempotency_key="pay-1")
    assert first["status"] == "approved"
    assert again == {**first, "replayed": True}
    assert api.snapshot() == snapshot
    assert scene.owner.client.get_grant(scene.grant_id)["remaining_uses"] == 4


def test_same_key_other_body_is_409(api: Api) -> None:
    scene = api.scene(max_uses=5)
    scene.pay(1_000, idempotency_key="pay-1")
    snapshot = api.snapshot()
    with pytest.raises(ApiError) as caught:
        scene.pay(2_000, idempotency_key="pay-1")
    assert (caught.value.status, caught.value.code) == (409, "idempotency_conflict")
    assert "Idempotency-Key" in caught.value.message
    assert api.snapshot() == snapshot


def test_keys_are_scoped_per_merchant(api: Api) -> None:
    scene = api.scene(max_uses=5)
    assert scene.pay(100, idempotency_key="shared")["status"] == "approved"
    other = api.scene()
    assert other.pay(100, idempotency_key="shared")["status"] == "approved"


def test_declines_store_no_key(api: Api) -> None:
    scene = api.scene(amount_cap=1_000)
    assert scene.pay(5_000, idempotency_key="k")["status"] == "declined"
    assert scene.pay(500, idempotency_key="k")["status"] == "approved"


def test_parallel_requests_with_one_key_charge_once(api: Api) -> None:
    scene = api.scene(max_uses=10)
    challenge, signed = scene.signed_means(100)

    def pay(_: int) -> dict[str, object]:
        return scene.merchant.client.authorize_payment(
            amount=100, currency="KRW", challenge=challenge, means=signed, idempotency_key="one"
        )

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(pay, range(8)))
    assert {a["payment_id"] for a in answers} == {answers[0]["payment_id"]}
    assert sum(1 for a in answers if a["replayed"] is False) == 1
    assert scene.owner.client.get_grant(scene.grant_id)["remaining_uses"] == 9
    assert api.audit() == []
