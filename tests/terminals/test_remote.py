"""Grants sent through the server, terminal to terminal (issue 12): the target keeps the
very record a tap would have handed it, and a fetch whose acknowledgement was lost is
fetched again and kept once."""

from __future__ import annotations

import httpx
import pytest

from nfcpay.errors import ApiError, ConfigError
from nfcpay.records import encode_message
from nfcpay.terminals import remote
from nfcpay.terminals.account import connect
from nfcpay.terminals.held import HeldGrants
from nfcpay.terminals.user import Rights, grant_record
from tests.support.scenes import Scene, SharedTransport


def test_the_target_keeps_the_record_a_tap_would_carry(scene: Scene) -> None:
    target_id = scene.target.identity().terminal_id
    with scene.client(scene.user) as owner, scene.client(scene.target) as target:
        sent = remote.send(scene.user, owner, Rights(amount_cap=30_000), to=target_id)
        grant_id = sent.grant["grant_id"]
        tapped = grant_record(scene.user.get("grants", grant_id), scene.user.identity(), target_id)
        [(waiting, record)] = remote.inbox(scene.target, target)
        assert waiting["grant_id"] == grant_id and record == tapped
        [got] = remote.receive(scene.target, target)
        assert encode_message([got.held.record]) == encode_message([tapped])
        assert got.delivery["status"] == "delivered" and "record" not in got.delivery
        assert remote.receive(scene.target, target) == []
        assert [n["kind"] for n in owner.notifications()] == ["grant_delivered"]


def test_a_lost_acknowledgement_fetches_the_same_grant_again(scene: Scene) -> None:
    """The target crashed, or lost the network, between keeping the grant and saying so."""
    target_id = scene.target.identity().terminal_id
    with scene.client(scene.user) as owner, scene.client(scene.target) as target:
        sent = remote.send(scene.user, owner, Rights(amount_cap=9_000), to=target_id)
        cut_off = connect(scene.target, None, transport=AcksLost(scene.server.transport))
        with cut_off, pytest.raises(ApiError):
            remote.receive(scene.target, cut_off)
        kept = HeldGrants(scene.target).get(sent.grant["grant_id"])
        [again] = remote.receive(scene.target, target)
        assert again.held == kept
        assert remote.receive(scene.target, target) == []


class AcksLost(SharedTransport):
    """The network to the server, except that no acknowledgement gets there."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/ack"):
            raise httpx.ConnectError("the network went down", request=request)
        return super().handle_request(request)


def test_a_new_grant_needs_its_target(scene: Scene) -> None:
    with scene.client(scene.user) as owner, pytest.raises(ConfigError) as refused:
        remote.send(scene.user, owner, Rights(amount_cap=1_000), to=None)
    assert "--to" in refused.value.message


def test_a_grant_the_server_will_not_deliver_is_withdrawn_not_left_active(scene: Scene) -> None:
    """Sent to a user terminal's id: the server issues the grant (any terminal may be named)
    but refuses to hold it for a terminal that cannot fetch it, so the send revokes it."""
    user_id = scene.user.identity().terminal_id
    with scene.client(scene.user) as owner:
        with pytest.raises(ApiError) as refused:
            remote.send(scene.user, owner, Rights(amount_cap=1_000), to=user_id)
        assert "was revoked" in refused.value.message
        [grant] = owner.list_grants()
        assert grant["status"] == "revoked"
