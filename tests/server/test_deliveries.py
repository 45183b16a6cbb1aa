"""Grants sent through the server (issue 12): the server keeps the hand-off record for the
one target terminal its owner named, encrypted, hands it to that terminal as often as it
asks until it is acknowledged, then deletes it and tells the owner. Revoking withdraws it.
Every other terminal gets the 404 of a delivery that does not exist."""

from __future__ import annotations

from typing import Any

import pytest

from nfcpay import crypto
from nfcpay.errors import ApiError
from nfcpay.records import GrantRecord, decode_one
from nfcpay.testing.server import PaymentScene, Terminal
from tests.support.harness import Api


def sent(api: Api) -> tuple[PaymentScene, bytes, dict[str, Any]]:
    scene = api.scene()
    record = scene.handoff()
    return (
        scene,
        record,
        scene.owner.client.send_grant(scene.grant_id, scene.target.terminal_id, record),
    )


def test_the_target_fetches_the_same_record_until_it_acknowledges(api: Api) -> None:
    scene, record, delivery = sent(api)
    assert delivery["status"] == "pending" and "record" not in delivery
    assert delivery["from"] == {
        "terminal_id": scene.owner.terminal_id,
        "label": scene.owner.info["label"],
    }
    first = scene.target.client.deliveries()
    again = scene.target.client.deliveries()  # the first answer was lost: ask again
    assert [crypto.b64d(d["record"]) for d in first] == [record]
    assert again == first
    one = scene.target.client.get_delivery(delivery["delivery_id"])
    assert crypto.b64d(one["record"]) == record

    acked = scene.target.client.ack_delivery(delivery["delivery_id"])
    assert acked["status"] == "delivered" and "record" not in acked
    assert scene.target.client.deliveries() == []
    assert scene.target.client.ack_delivery(delivery["delivery_id"]) == acked  # harmless
    assert "record" not in scene.target.client.get_delivery(delivery["delivery_id"])
    stored = api.server.query(lambda tx: tx.all("SELECT record_enc FROM deliveries"))
    assert [row["record_enc"] for row in stored] == [None]

    told = [n for n in scene.owner.client.notifications() if n["kind"] == "grant_delivered"]
    assert [n["message"] for n in told] == [
        f"grant {scene.grant_id} was delivered to {scene.target.info['label']} "
        f"({scene.target.terminal_id[:6]}…)"
    ]
    owner_view = scene.owner.client.get_delivery(delivery["delivery_id"])
    assert owner_view["status"] == "delivered"


def test_a_grant_fetched_through_the_server_pays_as_a_tapped_one(api: Api) -> None:
    scene, _, _ = sent(api)
    [item] = scene.target.client.deliveries()
    record = decode_one(crypto.b64d(item["record"]), GrantRecord)
    assert record.usage_auth == scene.usage_auth()
    assert scene.pay(1_000)["status"] == "approved"


def test_no_other_terminal_can_fetch_or_acknowledge_it(api: Api) -> None:
    scene, _, delivery = sent(api)
    delivery_id = delivery["delivery_id"]
    for stranger in (api.terminal("target"), api.terminal("user"), scene.merchant):
        assert stranger.client.deliveries() == []
        for call in (stranger.client.get_delivery, stranger.client.ack_delivery):
            with pytest.raises(ApiError) as refused:
                call(delivery_id)
            assert (refused.value.status, refused.value.code) == (404, "delivery_not_found")
    with pytest.raises(ApiError) as owner:
        scene.owner.client.ack_delivery(delivery_id)
    assert owner.value.status == 404
    assert "record" not in scene.owner.client.get_delivery(delivery_id)
    assert len(scene.target.client.deliveries()) == 1


def test_the_record_is_encrypted_at_rest(api: Api) -> None:
    scene, record, _ = sent(api)
    [row] = api.server.query(lambda tx: tx.all("SELECT record_enc FROM deliveries"))
    stored = bytes(row["record_enc"])
    for secret in (scene.usage_auth(), record, crypto.b64e(scene.usage_auth()).encode()):
        assert secret not in stored
    assert crypto.b64e(record).encode() not in stored


def test_revoking_withdraws_it(api: Api) -> None:
    scene, _, delivery = sent(api)
    scene.owner.client.revoke_grant(scene.grant_id)
    assert scene.target.client.deliveries() == []
    with pytest.raises(ApiError) as gone:
        scene.target.client.ack_delivery(delivery["delivery_id"])
    assert (gone.value.status, gone.value.code) == (404, "delivery_not_found")
    assert api.server.query(lambda tx: tx.scalar("SELECT COUNT(*) AS n FROM deliveries")) == 0


def test_sending_again_is_the_same_delivery(api: Api) -> None:
    scene, record, delivery = sent(api)
    again = scene.owner.client.send_grant(scene.grant_id, scene.target.terminal_id, record)
    assert again == delivery
    scene.target.client.ack_delivery(delivery["delivery_id"])
    with pytest.raises(ApiError) as done:
        scene.owner.client.send_grant(scene.grant_id, scene.target.terminal_id, record)
    assert (done.value.status, done.value.code) == (409, "already_delivered")


def refused(
    api: Api, scene: PaymentScene, to: Terminal, record: bytes, by: Terminal | None = None
) -> ApiError:
    before = api.snapshot()
    with pytest.raises(ApiError) as caught:
        (by or scene.owner).client.send_grant(scene.grant_id, to.terminal_id, record)
    assert api.snapshot() == before
    return caught.value


def test_a_record_that_is_not_the_grants_for_that_target_is_refused(api: Api) -> None:
    scene = api.scene()
    other = api.terminal("target")
    wrong_auth = refused(api, scene, scene.target, scene.handoff(usage_auth=bytes(32)))
    assert (wrong_auth.status, wrong_auth.code) == (422, "record_mismatch")
    assert "usage-auth is not grant" in wrong_auth.message
    bound_elsewhere = refused(api, scene, scene.target, scene.handoff(to=other))
    assert f"bound to {other.terminal_id}, not to {scene.target.terminal_id}" in (
        bound_elsewhere.message
    )
    not_allowed = refused(api, scene, other, scene.handoff(to=other))
    assert (not_allowed.code, not_allowed.field) == ("terminal_not_allowed", "to")
    garbage = refused(api, scene, scene.target, b"\x00not a record")
    assert (garbage.status, garbage.field) == (422, "record")


def test_only_the_owner_sends_its_active_grant(api: Api) -> None:
    scene = api.scene()
    record = scene.handoff()
    holder = refused(api, scene, scene.target, record, by=scene.target)
    assert holder.status == 403
    stranger = refused(api, scene, scene.target, record, by=api.terminal("user"))
    assert (stranger.status, stranger.code) == (404, "grant_not_found")
    scene.owner.client.revoke_grant(scene.grant_id)
    revoked = refused(api, scene, scene.target, record)
    assert (revoked.status, revoked.code) == (409, "grant_revoked")
