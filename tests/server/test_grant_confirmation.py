"""A grant issued to whoever tapped waits for its owner's confirmation (hardening hole 5).

The tapping terminal only announces itself, so the server issues such a grant unconfirmed,
tells the owner the terminal's registered label and key fingerprint, and lets it pay only
once the owner confirmed; revoking it, or leaving it past the window, withdraws it. The
fingerprint the tap claimed must be the terminal's registered key's.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from nfcpay import crypto
from nfcpay.errors import ApiError
from nfcpay.server.services.grants import CONFIRM_WINDOW_S
from nfcpay.testing.server import PaymentScene, Terminal
from tests.support.harness import Api


def tapped_grant(scene: PaymentScene, by: Terminal | None = None) -> PaymentScene:
    """The scene with a grant issued in a tap by ``by`` (default: the scene's target)."""
    by = by or scene.target
    return scene.another_grant(amount_cap=5_000, tap_fingerprint=by.key_fingerprint)


def test_a_grant_issued_in_a_tap_names_the_tapper_and_pays_only_once_confirmed(api: Api) -> None:
    scene = api.scene()
    answer = scene.owner.client.issue_grant(
        scene.source["source_id"],
        [scene.target.terminal_id],
        amount_cap=5_000,
        currency="KRW",
        tap_fingerprint=scene.target.key_fingerprint,
    )
    assert answer["tapped"] == {
        "terminal_id": scene.target.terminal_id,
        "label": scene.target.info["label"],
        "key_fingerprint": scene.target.key_fingerprint.hex(),
    }
    assert answer["grant"]["status"] == "unconfirmed"
    assert answer["grant"]["confirm_by"]
    pending = replace(scene, grant=answer["grant"], auth_code=crypto.b64d(answer["auth_code"]))
    before = api.snapshot()
    declined = pending.pay(1_000)
    assert (declined["status"], declined["decline_code"]) == ("declined", "grant_not_confirmed")
    assert "waits for its owner to confirm" in declined["message"]
    assert api.snapshot() == before

    confirmed = scene.owner.client.confirm_grant(pending.grant_id)
    assert (confirmed["status"], confirmed["confirm_by"]) == ("active", None)
    assert pending.pay(1_000)["status"] == "approved"
    again = scene.owner.client.confirm_grant(pending.grant_id)  # changes nothing
    assert (again["status"], again["confirm_by"]) == ("exhausted", None)
    assert api.audit() == []


def test_a_fingerprint_that_is_not_the_registered_keys_is_refused(api: Api) -> None:
    """A relay cannot claim another terminal's fingerprint for its own id: the server knows
    every registered key. Nothing is issued."""
    scene = api.scene()
    relay = api.terminal("target")
    before = api.snapshot()
    with pytest.raises(ApiError) as refused:
        scene.owner.client.issue_grant(
            scene.source["source_id"],
            [relay.terminal_id],
            amount_cap=5_000,
            currency="KRW",
            tap_fingerprint=scene.target.key_fingerprint,
        )
    assert (refused.value.status, refused.value.code) == (409, "key_fingerprint_mismatch")
    assert f"terminal {relay.terminal_id} showed in the tap" in refused.value.message
    assert "no grant was issued" in refused.value.message
    assert api.snapshot() == before


def test_declining_revokes_it(api: Api) -> None:
    scene = tapped_grant(api.scene())
    assert scene.owner.client.revoke_grant(scene.grant_id)["status"] == "revoked"
    assert scene.pay(1_000)["decline_code"] == "grant_revoked"
    with pytest.raises(ApiError) as refused:
        scene.owner.client.confirm_grant(scene.grant_id)
    assert (refused.value.status, refused.value.code) == (409, "grant_revoked")
    assert scene.pay(1_000)["decline_code"] == "grant_revoked"


def test_ignoring_it_withdraws_it_after_the_window(api: Api) -> None:
    scene = tapped_grant(api.scene())
    api.clock.advance(CONFIRM_WINDOW_S - 1)
    assert scene.owner.client.get_grant(scene.grant_id)["status"] == "unconfirmed"
    api.clock.advance(1)
    assert scene.owner.client.get_grant(scene.grant_id)["status"] == "revoked"
    assert scene.target.client.get_grant(scene.grant_id)["status"] == "revoked"
    before = api.snapshot()
    declined = scene.pay(1_000)
    assert declined["decline_code"] == "grant_revoked"
    assert "did not confirm the terminal that tapped" in declined["message"]
    assert api.snapshot() == before
    with pytest.raises(ApiError) as late:
        scene.owner.client.confirm_grant(scene.grant_id)
    assert (late.value.status, late.value.code) == (409, "confirmation_lapsed")
    assert "give a new one" in late.value.message
    assert api.snapshot() == before


def test_only_its_owner_confirms_it(api: Api) -> None:
    scene = tapped_grant(api.scene())
    with pytest.raises(ApiError) as holder:
        scene.target.client.confirm_grant(scene.grant_id)
    assert holder.value.status == 403
    with pytest.raises(ApiError) as stranger:
        api.terminal("user").client.confirm_grant(scene.grant_id)
    assert stranger.value.status == 404
    assert scene.owner.client.get_grant(scene.grant_id)["status"] == "unconfirmed"


def test_a_grant_issued_in_a_tap_is_for_the_one_terminal_that_tapped(api: Api) -> None:
    scene = api.scene()
    other = api.terminal("target")
    with pytest.raises(ApiError) as refused:
        scene.owner.client.issue_grant(
            scene.source["source_id"],
            [scene.target.terminal_id, other.terminal_id],
            amount_cap=5_000,
            currency="KRW",
            tap_fingerprint=scene.target.key_fingerprint,
        )
    assert (refused.value.status, refused.value.field) == (422, "allowed_terminals")


@pytest.mark.parametrize("claimed", ["9F3A5C7E1B2D4F60", "9f3a", "zz" * 8])
def test_a_malformed_fingerprint_is_refused(api: Api, claimed: str) -> None:
    scene = api.scene()
    body = {
        "source_id": scene.source["source_id"],
        "allowed_terminals": [scene.target.terminal_id],
        "currency": "KRW",
        "rights": {"amount_cap": 1_000},
        "tap_fingerprint": claimed,
    }
    with pytest.raises(ApiError) as refused:
        scene.owner.client._call("POST", "/v1/grants", body)
    assert (refused.value.status, refused.value.field) == (422, "tap_fingerprint")


def test_a_grant_bound_ahead_needs_no_confirmation(api: Api) -> None:
    scene = api.scene()
    assert (scene.grant["status"], scene.grant["confirm_by"]) == ("active", None)
    assert scene.owner.client.confirm_grant(scene.grant_id)["status"] == "active"
    assert scene.pay(1_000)["status"] == "approved"


def test_the_shown_fingerprint_is_the_registered_keys() -> None:
    key = crypto.generate_terminal_key()
    fingerprint = crypto.key_fingerprint(crypto.public_key_bytes(key))
    shown = crypto.format_fingerprint(fingerprint)
    assert shown == "-".join(fingerprint[:6].hex().upper()[i : i + 4] for i in (0, 4, 8))
    with pytest.raises(ValueError, match="at least 6 bytes"):
        crypto.format_fingerprint(fingerprint[:5])
