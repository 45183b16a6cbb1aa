"""Authorization rules: every decline code, approvals, split modes, all-or-nothing."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nfcpay import crypto
from nfcpay.declines import DeclineCode
from nfcpay.errors import ApiError
from nfcpay.testing.server import PaymentScene, signed_means
from tests.support.harness import Api

Final = Callable[[], dict[str, Any]]


def _soon(seconds: float) -> timedelta:
    """A validity bound relative to the server clock, resolved when the case runs.

    Resolving it at collection time would let a long suite age the bound into the past.
    """
    return timedelta(seconds=seconds)


def _resolve(api: Api, kwargs: dict[str, Any]) -> dict[str, Any]:
    now = datetime.fromtimestamp(api.clock.now, UTC)
    return {k: now + v if isinstance(v, timedelta) else v for k, v in kwargs.items()}


def _unknown_grant(api: Api, s: PaymentScene) -> Final:
    return lambda: s.pay(100, grants=[("g_doesnotexist", s.usage_auth(), 100)])


def _terminal_not_allowed(api: Api, s: PaymentScene) -> Final:
    stranger = api.terminal("target")
    return lambda: s.pay(100, presenter=stranger)


def _usage_auth_mismatch(api: Api, s: PaymentScene) -> Final:
    return lambda: s.pay(100, grants=[(s.grant_id, secrets.token_bytes(32), 100)])


def _bad_signature(api: Api, s: PaymentScene) -> Final:
    def final() -> dict[str, Any]:
        challenge = secrets.token_bytes(16)
        means = signed_means(
            crypto.generate_terminal_key(),
            presenting_terminal=s.target.terminal_id,
            merchant_id=str(s.merchant.merchant_id),
            challenge=challenge,
            amount=100,
            currency="KRW",
            purpose=s.merchant.primary_category,
            grants=[(s.grant_id, s.usage_auth(), 100)],
        )
        return s.merchant.client.authorize_payment(
            amount=100, currency="KRW", challenge=challenge, means=means
        )

    return final


def _challenge_reused(api: Api, s: PaymentScene) -> Final:
    challenge = secrets.token_bytes(16)
    assert s.pay(100, challenge=challenge)["status"] == "approved"
    return lambda: s.pay(100, challenge=challenge)


def _grant_revoked(api: Api, s: PaymentScene) -> Final:
    s.owner.client.revoke_grant(s.grant_id)
    return lambda: s.pay(100)


def _grant_not_confirmed(api: Api, s: PaymentScene) -> Final:
    tapped = s.another_grant(amount_cap=50_000, tap_fingerprint=s.target.key_fingerprint)
    return lambda: tapped.pay(100)


def _grant_expired(api: Api, s: PaymentScene) -> Final:
    api.clock.advance(120)
    return lambda: s.pay(100)


def _no_uses_left(api: Api, s: PaymentScene) -> Final:
    assert s.pay(100)["status"] == "approved"
    return lambda: s.pay(100)


def _source_not_active(api: Api, s: PaymentScene) -> Final:
    s.owner.client.set_source_status(s.source["source_id"], "dormant")
    return lambda: s.pay(100)


def _grant_locked(api: Api, s: PaymentScene) -> Final:
    for _ in range(5):
        bad = s.pay(100, grants=[(s.grant_id, secrets.token_bytes(32), 100)])
        assert bad["decline_code"] == "usage_auth_mismatch"
    return lambda: s.pay(100)


def _unknown_source(api: Api, s: PaymentScene) -> Final:
    return lambda: s.pay(
        300,
        grants=[(s.grant_id, s.usage_auth(), 100)],
        own_source_id=s.source["source_id"],
        own_amount=200,
    )


def _bill_already_paid(api: Api, s: PaymentScene) -> Final:
    assert s.pay(100, bill_id=s.bill_id)["status"] == "approved"
    return lambda: s.pay(100, bill_id=s.bill_id)


def _bill_not_yours(api: Api, s: PaymentScene) -> Final:
    """Another terminal pays the scene target's bill first, with a grant naming it."""
    stranger = api.terminal("target")
    theirs = s.owner.client.issue_grant(
        s.source["source_id"], [stranger.terminal_id], amount_cap=1, currency="KRW",
        bill_id=s.bill_id,
    )  # fmt: skip
    gid, code = theirs["grant"]["grant_id"], crypto.b64d(theirs["auth_code"])
    usage_auth = crypto.usage_auth(code, gid, s.owner.terminal_id, stranger.terminal_id)
    return lambda: s.pay(1, grants=[(gid, usage_auth, 1)], presenter=stranger, bill_id=s.bill_id)


def _plain(amount: int, **request: Any) -> Callable[[Api, PaymentScene], Final]:
    return lambda api, s: lambda: s.pay(amount, **request)


#: decline code → (payment_scene kwargs, set-up returning the declined call, notification kind)
CASES: dict[str, tuple[dict[str, Any], Callable[[Api, PaymentScene], Final], str | None]] = {
    "unknown_grant": ({}, _unknown_grant, None),
    "terminal_not_allowed": ({}, _terminal_not_allowed, "terminal_not_allowed"),
    "usage_auth_mismatch": ({}, _usage_auth_mismatch, "usage_auth_mismatch"),
    "bad_signature": ({}, _bad_signature, "forged_presentation"),
    "challenge_reused": ({"max_uses": 2}, _challenge_reused, None),
    "grant_revoked": ({}, _grant_revoked, None),
    "grant_not_confirmed": ({}, _grant_not_confirmed, None),
    "grant_expired": ({"valid_until": _soon(60)}, _grant_expired, "grant_expired"),
    "grant_not_yet_valid": ({"valid_from": _soon(100)}, _plain(100), None),
    "no_uses_left": ({}, _no_uses_left, None),
    "over_remaining_cap": ({"amount_cap": 1000}, _plain(1001), None),
    "over_per_use_cap": ({"per_use_cap": 100, "max_uses": 3}, _plain(200), None),
    "allowance_exceeded": (
        {"amount_cap": 5000, "allowance": {"period": "day", "amount": 1000, "time_zone": "UTC"}},
        _plain(1001),
        None,
    ),
    "purpose_not_allowed": ({"purposes": ["5411"]}, _plain(100), None),
    "purpose_not_registered": ({}, _plain(100, purpose="5411"), None),
    "region_not_allowed": ({"regions": ["KR-26"]}, _plain(100), None),
    "merchant_not_allowed": ({"merchants": ["m_elsewhere"]}, _plain(100), None),
    "source_not_active": ({}, _source_not_active, None),
    "limit_exceeded": (
        {"source": {"kind": "card", "limit": 1000}, "amount_cap": 5000},
        _plain(2000),
        "limit_declined",
    ),
    "insufficient_balance": (
        {"source": {"kind": "wallet", "balance": 500}},
        _plain(600),
        "limit_declined",
    ),
    "currency_mismatch": ({}, _plain(100, currency="USD"), None),
    "shares_do_not_add_up": (
        {},
        lambda api, s: lambda: s.pay(1000, grants=[(s.grant_id, s.usage_auth(), 900)]),
        None,
    ),
    "grant_locked": ({}, _grant_locked, None),
    "unknown_source": ({}, _unknown_source, None),
    "bill_mismatch": ({"bill": {"total": 100}}, _plain(100), "bill_mismatch"),
    "bill_already_paid": ({"bill": {"total": 100}, "max_uses": 2}, _bill_already_paid, None),
    "bill_not_yours": ({"bill": {"total": 100}}, _bill_not_yours, None),
    "bill_terms_mismatch": (
        {"bill": {"total": 100}},
        lambda api, s: lambda: s.pay(99, bill_id=s.bill_id),
        None,
    ),
}


def test_the_cases_cover_every_decline_code() -> None:
    """One real request per member of DeclineCode, and no code the enum does not know."""
    assert sorted(set(DeclineCode) - set(CASES)) == [], "codes no case provokes"
    assert sorted(set(CASES) - set(DeclineCode)) == [], "cases for codes not in DeclineCode"


@pytest.mark.parametrize("code", sorted(CASES))
def test_each_decline_has_its_code_and_changes_nothing(api: Api, code: str) -> None:
    scene_kwargs, prepare, kind = CASES[code]
    scene = api.scene(**_resolve(api, scene_kwargs))
    final = prepare(api, scene)
    before = api.snapshot()
    seen = {n["notification_id"] for n in scene.owner.client.notifications()}
    answer = final()
    assert answer["status"] == "declined"
    assert answer["decline_code"] == code, answer
    assert answer["payment_id"] is None
    assert answer["message"]
    assert any(f["decline_code"] == code for f in answer["failing"])
    assert api.snapshot() == before
    fresh = [n for n in scene.owner.client.notifications() if n["notification_id"] not in seen]
    assert [n["kind"] for n in fresh] == ([kind] if kind else [])
    assert api.audit() == []


def test_approval_charges_everything_once(api: Api) -> None:
    scene = api.scene(amount_cap=10_000, max_uses=3, bill={"total": 4_000})
    answer = scene.pay(4_000, bill_id=scene.bill_id)
    assert answer["status"] == "approved"
    assert answer["shares"] == [{"grant_id": scene.grant_id, "amount": 4_000}]
    assert answer["approval_code"]
    grant = scene.owner.client.get_grant(scene.grant_id)
    assert (grant["remaining_amount"], grant["remaining_uses"]) == (6_000, 2)
    card = scene.owner.client.list_sources()[0]
    assert (card["outstanding"], card["available"]) == (4_000, 96_000)
    payment = scene.merchant.client.get_payment(answer["payment_id"])
    assert payment["amount"] == 4_000
    assert payment["bill_id"] == scene.bill_id
    bill = scene.target.client.get_bill(str(scene.bill_id))
    assert (bill["status"], bill["payment_id"]) == ("paid", answer["payment_id"])
    kinds = [n["kind"] for n in scene.owner.client.notifications()]
    assert kinds == ["grant_used"]
    assert api.audit() == []


def test_last_use_notifies_exhausted(api: Api) -> None:
    scene = api.scene(amount_cap=1_000)
    assert scene.pay(1_000)["status"] == "approved"
    kinds = [n["kind"] for n in scene.owner.client.notifications()]
    assert kinds == ["grant_used", "grant_exhausted"]
    assert scene.owner.client.get_grant(scene.grant_id)["status"] == "exhausted"


def _second_grant(api: Api, scene: PaymentScene, **rights: Any) -> tuple[str, bytes]:
    friend = api.terminal("user")
    wallet = friend.client.add_wallet(rights.pop("balance", 10_000), "KRW")
    issued = friend.client.issue_grant(
        wallet["source_id"],
        [scene.target.terminal_id],
        currency="KRW",
        amount_cap=rights.pop("amount_cap", 10_000),
        **rights,
    )
    gid = issued["grant"]["grant_id"]
    ua = crypto.usage_auth(
        crypto.b64d(issued["auth_code"]), gid, friend.terminal_id, scene.target.terminal_id
    )
    return gid, ua


def test_group_payment_all_shares_and_own_source(api: Api) -> None:
    scene = api.scene()
    own = scene.target.client.add_wallet(5_000, "KRW")
    gid2, ua2 = _second_grant(api, scene)
    answer = scene.pay(
        9_000,
        grants=[(scene.grant_id, scene.usage_auth(), 3_000), (gid2, ua2, 4_000)],
        own_source_id=own["source_id"],
        own_amount=2_000,
    )
    assert answer["status"] == "approved", answer
    assert sorted(map(str, answer["shares"])) == sorted(
        map(
            str,
            [
                {"grant_id": scene.grant_id, "amount": 3_000},
                {"grant_id": gid2, "amount": 4_000},
                {"source_id": own["source_id"], "amount": 2_000},
            ],
        )
    )
    assert scene.target.client.list_sources()[0]["balance"] == 3_000
    assert api.audit() == []


def test_group_payment_is_all_or_nothing(api: Api) -> None:
    scene = api.scene()
    gid2, ua2 = _second_grant(api, scene, balance=1_000)
    before = api.snapshot()
    answer = scene.pay(
        5_000, grants=[(scene.grant_id, scene.usage_auth(), 3_000), (gid2, ua2, 2_000)]
    )
    assert answer["decline_code"] == "insufficient_balance"
    assert [f.get("grant_id") for f in answer["failing"]] == [gid2]
    assert api.snapshot() == before


def test_remainder_mode_charges_own_source_the_rest(api: Api) -> None:
    scene = api.scene()
    own = scene.target.client.add_wallet(5_000, "KRW")
    # The own source named, its amount left for the server to work out.
    answer = scene.pay(
        3_000,
        grants=[(scene.grant_id, scene.usage_auth(), 1_000)],
        split_mode="remainder",
        posted={"own_source_id": own["source_id"]},
    )
    assert answer["status"] == "approved", answer
    assert {"source_id": own["source_id"], "amount": 2_000} in answer["shares"]
    over = scene.pay(
        500,
        grants=[(scene.grant_id, scene.usage_auth(), 1_000)],
        split_mode="remainder",
        posted={"own_source_id": own["source_id"]},
    )
    assert over["decline_code"] == "shares_do_not_add_up"
    assert "500" in over["message"]


def test_exact_mode_names_the_difference(api: Api) -> None:
    scene = api.scene()
    answer = scene.pay(1_000, grants=[(scene.grant_id, scene.usage_auth(), 750)])
    assert answer["decline_code"] == "shares_do_not_add_up"
    assert "250 KRW short" in answer["message"]


def test_bill_bound_grant_pays_its_bill(api: Api) -> None:
    scene = api.scene(bill={"total": 100})
    other = scene.target.client.open_bill(total=100, currency="KRW")["bill_id"]
    assert scene.pay(100, bill_id=other)["decline_code"] == "bill_mismatch"
    assert scene.pay(100, bill_id=scene.bill_id)["status"] == "approved"


def test_purpose_override_is_checked(api: Api) -> None:
    scene = api.scene(purposes=["5411"], max_uses=2, merchant={"categories": ["5812", "5411"]})
    assert scene.pay(100)["decline_code"] == "purpose_not_allowed"
    assert scene.pay(100, purpose="5411")["status"] == "approved"


def test_a_purpose_the_merchant_did_not_register_is_declined(api: Api) -> None:
    """A 5999 merchant claims 5812 to reach a grant limited to restaurants: declined, and
    nothing changes."""
    scene = api.scene(purposes=["5812"], merchant={"categories": ["5999"]})
    before = api.snapshot()
    answer = scene.pay(100, purpose="5812")
    assert (answer["status"], answer["decline_code"]) == ("declined", "purpose_not_registered")
    assert answer["message"] == (
        f"merchant {scene.merchant.merchant_id} is registered for 5999, not for purpose 5812"
    )
    assert api.snapshot() == before


@pytest.mark.parametrize(
    ("field", "request_change"),
    [
        ("means.grants", "duplicate"),
        ("challenge", "short_challenge"),
        ("amount", "float_amount"),
        ("Idempotency-Key", "no_key"),
    ],
)
def test_malformed_payment_requests_are_422(api: Api, field: str, request_change: str) -> None:
    scene = api.scene()
    client = scene.merchant.client
    challenge = secrets.token_bytes(16)
    body: dict[str, Any] = {
        "amount": 100,
        "currency": "KRW",
        "challenge": crypto.b64e(challenge),
        "means": {"presenting_terminal": scene.target.terminal_id, "signature": "x"},
    }
    key: str | None = "k-1"
    if request_change == "duplicate":
        share = {"grant_id": scene.grant_id, "usage_auth": "x", "amount": 50}
        body["means"]["grants"] = [share, share]
    elif request_change == "short_challenge":
        body["challenge"] = crypto.b64e(b"short")
    elif request_change == "float_amount":
        body["amount"] = 100.0
    else:
        key = None
    before = api.snapshot()
    with pytest.raises(ApiError) as caught:
        client._call("POST", "/v1/payments", body, idempotency_key=key)
    assert caught.value.status == 422
    assert caught.value.field == field
    assert api.snapshot() == before


def test_only_merchants_take_payments(api: Api) -> None:
    scene = api.scene()
    with pytest.raises(ApiError) as caught:
        scene.owner.client.authorize_payment(
            amount=1, currency="KRW", challenge=secrets.token_bytes(16), means={}
        )
    assert caught.value.status in {403, 422}
    with pytest.raises(ApiError) as listing:
        scene.owner.client.list_payments()
    assert listing.value.status == 403


@pytest.mark.parametrize(
    ("version", "where"),
    [(None, "the merchant and target terminals"), (1, "the merchant and target terminals"),
     (3, "the payment server")],
)  # fmt: skip
def test_means_of_another_presentation_version_say_which_side_to_upgrade(
    api: Api, version: int | None, where: str
) -> None:
    """A merchant on nfcpay before version 2 sends no ``means.version`` (its target signed no
    purpose): refused in a sentence that says what to upgrade, and nothing changes."""
    scene = api.scene()
    challenge, means = scene.signed_means(100)
    means = {k: v for k, v in means.items() if k != "version"}
    if version is not None:
        means["version"] = version
    before = api.snapshot()
    with pytest.raises(ApiError) as caught:
        scene.merchant.client.authorize_payment(
            amount=100, currency="KRW", challenge=challenge, means=means
        )
    assert (caught.value.status, caught.value.code) == (422, "unsupported_version")
    assert caught.value.field == "means.version"
    assert caught.value.message.endswith(f"upgrade nfcpay on {where}")
    assert api.snapshot() == before
