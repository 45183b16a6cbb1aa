"""Issue 2, acceptance 2: every decline code of the API contract, through the HTTP API of a
REAL server process, changes no balance, grant, ledger, payment, challenge or idempotency row.

Each case gets a fresh owner, target, merchant, source and grant (:meth:`Harness.scene`),
runs its set-up (earlier approvals, a revocation, ...), snapshots the database, makes the ONE
request that must be declined, and compares. Owner notifications are the only writes a decline
may make, and exactly the ones the contract lists (``notified``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nfcpay import crypto
from nfcpay.declines import DeclineCode
from nfcpay.testing.server import PaymentScene, Terminal, signed_means, zone_at_noon
from tests.support.harness import Harness, changed_tables

AMOUNT = 1_000
Request = Callable[[], dict[str, Any]]
#: Prepares (registers terminals, issues grants, ...) and returns the request to be declined.
Attempt = Callable[[Harness, PaymentScene], Request]


def _approved(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["status"] == "approved", answer
    return answer


def _in(h: Harness, seconds: float) -> datetime:
    """``seconds`` from now on the server's clock."""
    return datetime.fromtimestamp(h.server.now(), UTC) + timedelta(seconds=seconds)


def _pay(**overrides: Any) -> Attempt:
    """The scene's target pays ``AMOUNT`` (or ``amount``) with ``overrides`` applied."""

    def attempt(h: Harness, s: PaymentScene) -> Request:
        amount = overrides.get("amount", AMOUNT)
        rest = {k: v for k, v in overrides.items() if k != "amount"}
        return lambda: s.pay(amount, **rest)

    return attempt


def _post(shop: Terminal, means: dict[str, Any], challenge: bytes) -> dict[str, Any]:
    return shop.client.authorize_payment(
        amount=AMOUNT, currency="KRW", challenge=challenge, means=means
    )


# --- attempts that need more than scene.pay(...) -------------------------------------------


def _unknown_grant(h: Harness, s: PaymentScene) -> Request:
    return lambda: s.pay(AMOUNT, grants=[(crypto.new_id("g"), s.usage_auth(), AMOUNT)])


def _stranger_presents(h: Harness, s: PaymentScene) -> Request:
    # A genuine usage-auth for the stranger, signed by the stranger: only the binding is wrong.
    stranger = h.terminal("target")
    return lambda: s.pay(AMOUNT, presenter=stranger)


def _handed_over_in_a_tap(h: Harness, s: PaymentScene) -> Request:
    # Issued to whoever tapped: it waits for the owner to confirm who that was.
    tapped = s.another_grant(amount_cap=AMOUNT, tap_fingerprint=s.target.key_fingerprint)
    return lambda: tapped.pay(AMOUNT)


def _wrong_usage_auth(h: Harness, s: PaymentScene) -> Request:
    return lambda: s.pay(AMOUNT, grants=[(s.grant_id, secrets.token_bytes(32), AMOUNT)])


def _signed_by_other_key(h: Harness, s: PaymentScene) -> Request:
    challenge = secrets.token_bytes(16)
    means = signed_means(
        crypto.generate_terminal_key(),
        presenting_terminal=s.target.terminal_id,
        merchant_id=str(s.merchant.merchant_id),
        challenge=challenge,
        amount=AMOUNT,
        currency="KRW",
        purpose=s.merchant.primary_category,
        grants=[(s.grant_id, s.usage_auth(), AMOUNT)],
    )
    return lambda: _post(s.merchant, means, challenge)


def _copied_to_other_counter(h: Harness, s: PaymentScene) -> Request:
    """Means signed for merchant A, replayed by merchant B: useless at another counter."""
    challenge, means = s.signed_means(AMOUNT)
    other_shop = h.terminal("merchant")
    return lambda: _post(other_shop, means, challenge)


def _amount_changed_after_signing(h: Harness, s: PaymentScene) -> Request:
    challenge, means = s.signed_means(AMOUNT - 1)
    means["grants"][0]["amount"] = AMOUNT
    return lambda: _post(s.merchant, means, challenge)


def _second_grant_over_cap(h: Harness, s: PaymentScene) -> Request:
    """Two shares, the second over its cap: the first, fine on its own, is not charged."""
    small = s.another_grant(amount_cap=100)
    shares = [(s.grant_id, s.usage_auth(), AMOUNT - 200), (small.grant_id, small.usage_auth(), 200)]
    return lambda: s.pay(AMOUNT, grants=shares)


def _own_share_from_foreign_source(h: Harness, s: PaymentScene) -> Request:
    # The owner's source is not the presenting target's: it cannot pay the own share.
    return lambda: s.pay(
        AMOUNT,
        grants=[(s.grant_id, s.usage_auth(), 400)],
        own_source_id=s.source["source_id"],
        own_amount=AMOUNT - 400,
    )


def _pay_the_grants_bill(h: Harness, s: PaymentScene) -> Request:
    return lambda: s.pay(AMOUNT, bill_id=s.bill_id)


def _pay_an_own_bill_without_its_grant(h: Harness, s: PaymentScene) -> Request:
    bill_id = s.target.client.open_bill(total=AMOUNT, currency="KRW")["bill_id"]
    return lambda: s.pay(AMOUNT, bill_id=bill_id)


def _squat_the_bill(h: Harness, s: PaymentScene) -> Request:
    """Hardening hole 2: another terminal pair issues a grant naming the target's bill and
    pays 1 KRW with it at a counter of its own, to make the real payment bill_already_paid."""
    thief = h.scene(bill=None, amount_cap=1, bill_id=s.bill_id)
    return lambda: thief.pay(1, bill_id=s.bill_id)


def _short_shares(split_mode: str, share: int) -> Attempt:
    def attempt(h: Harness, s: PaymentScene) -> Request:
        grants = [(s.grant_id, s.usage_auth(), share)]
        return lambda: s.pay(AMOUNT, grants=grants, split_mode=split_mode)

    return attempt


# --- set-ups run before the snapshot ---------------------------------------------------------


def _use_once(h: Harness, s: PaymentScene) -> None:
    _approved(s.pay(AMOUNT))


def _spend_600(h: Harness, s: PaymentScene) -> None:
    _approved(s.pay(600))


def _revoke(h: Harness, s: PaymentScene) -> None:
    s.owner.client.revoke_grant(s.grant_id)


def _set_source(status: str) -> Callable[[Harness, PaymentScene], None]:
    def setup(h: Harness, s: PaymentScene) -> None:
        s.owner.client.set_source_status(s.source["source_id"], status)

    return setup


def _move_clock_past_expiry(h: Harness, s: PaymentScene) -> None:
    until = datetime.fromisoformat(s.grant["rights"]["valid_until"]).timestamp()
    h.server.advance(max(0.0, until - h.server.now()) + 1)


def _lock_by_wrong_usage_auth(h: Harness, s: PaymentScene) -> None:
    for _ in range(5):
        answer = s.pay(AMOUNT, grants=[(s.grant_id, secrets.token_bytes(32), AMOUNT)])
        assert answer["decline_code"] == "usage_auth_mismatch"
    assert s.owner.client.get_grant(s.grant_id)["status"] == "locked"


REUSED_CHALLENGE = secrets.token_bytes(16)


def _pay_with_reused_challenge(h: Harness, s: PaymentScene) -> None:
    _approved(s.pay(AMOUNT, challenge=REUSED_CHALLENGE))


def _pay_the_bill(h: Harness, s: PaymentScene) -> None:
    _approved(_pay_the_grants_bill(h, s)())


@dataclass(frozen=True)
class Case:
    code: str
    attempt: Attempt
    #: payment_scene keyword arguments: ``source=``, ``merchant=`` and usage rights.
    scene: dict[str, Any] = field(default_factory=dict)
    setup: Callable[[Harness, PaymentScene], None] | None = None
    #: Notification kinds the decline itself sends the owner, in order.
    notified: tuple[str, ...] = ()
    #: Scene arguments computed when the case runs (e.g. times relative to now).
    late_scene: Callable[[Harness], dict[str, Any]] | None = None


CASES: dict[str, Case] = {
    "unknown_grant": Case("unknown_grant", _unknown_grant),
    "terminal_not_allowed": Case(
        "terminal_not_allowed", _stranger_presents, notified=("terminal_not_allowed",)
    ),
    "usage_auth_mismatch": Case(
        "usage_auth_mismatch", _wrong_usage_auth, notified=("usage_auth_mismatch",)
    ),
    # A genuine usage-auth without its terminal's signature: a copy or an altered
    # presentation, so the grant's owner is told.
    "bad_signature-other_key": Case(
        "bad_signature", _signed_by_other_key, notified=("forged_presentation",)
    ),
    "bad_signature-other_counter": Case(
        "bad_signature", _copied_to_other_counter, notified=("forged_presentation",)
    ),
    "bad_signature-amount_changed": Case(
        "bad_signature", _amount_changed_after_signing, notified=("forged_presentation",)
    ),
    "challenge_reused": Case(
        "challenge_reused",
        _pay(challenge=REUSED_CHALLENGE),
        scene={"max_uses": 3},
        setup=_pay_with_reused_challenge,
    ),
    "grant_revoked": Case("grant_revoked", _pay(), setup=_revoke),
    "grant_not_confirmed": Case("grant_not_confirmed", _handed_over_in_a_tap),
    "grant_expired": Case(
        "grant_expired",
        _pay(),
        late_scene=lambda h: {"valid_until": _in(h, 30)},
        setup=_move_clock_past_expiry,
        notified=("grant_expired",),
    ),
    "grant_not_yet_valid": Case(
        "grant_not_yet_valid", _pay(), late_scene=lambda h: {"valid_from": _in(h, 3600)}
    ),
    "no_uses_left": Case("no_uses_left", _pay(), setup=_use_once),
    "over_remaining_cap": Case(
        "over_remaining_cap",
        _pay(amount=500),
        scene={"amount_cap": AMOUNT, "max_uses": 2},
        setup=_spend_600,
    ),
    "over_remaining_cap-second_share": Case("over_remaining_cap", _second_grant_over_cap),
    "over_per_use_cap": Case(
        "over_per_use_cap", _pay(amount=AMOUNT + 1), scene={"per_use_cap": AMOUNT}
    ),
    "allowance_exceeded": Case(
        "allowance_exceeded",
        _pay(amount=500),
        scene={
            "amount_cap": 5 * AMOUNT,
            "max_uses": 3,
            "allowance": {"period": "day", "amount": AMOUNT, "time_zone": zone_at_noon()},
        },
        setup=_spend_600,
    ),
    "purpose_not_allowed": Case("purpose_not_allowed", _pay(), scene={"purposes": ["5411"]}),
    "purpose_not_allowed-override": Case(
        "purpose_not_allowed",
        _pay(purpose="7995"),
        scene={"purposes": ["5812"], "merchant": {"categories": ["5812", "7995"]}},
    ),
    # The merchant (registered for 5812) claims the purpose the grant allows.
    "purpose_not_registered": Case(
        "purpose_not_registered", _pay(purpose="5411"), scene={"purposes": ["5411"]}
    ),
    "region_not_allowed": Case("region_not_allowed", _pay(), scene={"regions": ["US-CA"]}),
    "merchant_not_allowed": Case(
        "merchant_not_allowed",
        _pay(),
        late_scene=lambda h: {"merchants": [h.terminal("merchant").merchant_id]},
    ),
    "source_not_active-dormant": Case("source_not_active", _pay(), setup=_set_source("dormant")),
    "source_not_active-closed": Case("source_not_active", _pay(), setup=_set_source("closed")),
    "limit_exceeded": Case(
        "limit_exceeded",
        _pay(),
        scene={"source": {"kind": "card", "limit": AMOUNT - 1}},
        notified=("limit_declined",),
    ),
    "insufficient_balance-wallet": Case(
        "insufficient_balance",
        _pay(),
        scene={"source": {"kind": "wallet", "balance": AMOUNT - 1}},
        notified=("limit_declined",),
    ),
    "insufficient_balance-bank": Case(
        "insufficient_balance",
        _pay(),
        scene={"source": {"kind": "bank", "balance": 1}},
        notified=("limit_declined",),
    ),
    "currency_mismatch": Case("currency_mismatch", _pay(currency="USD")),
    "shares_do_not_add_up-exact": Case("shares_do_not_add_up", _short_shares("exact", 900)),
    "shares_do_not_add_up-remainder": Case(
        "shares_do_not_add_up", _short_shares("remainder", AMOUNT + 1)
    ),
    "grant_locked": Case("grant_locked", _pay(), setup=_lock_by_wrong_usage_auth),
    "unknown_source": Case("unknown_source", _own_share_from_foreign_source),
    "bill_mismatch": Case(
        "bill_mismatch",
        _pay(),
        scene={"bill": {"total": AMOUNT}},
        notified=("bill_mismatch",),  # issue 5: the member is told
    ),
    # The target's own bill, but no member's grant of it.
    "bill_mismatch-no_member_grant": Case("bill_mismatch", _pay_an_own_bill_without_its_grant),
    # A member's grant of the bill, but the bill was paid already.
    "bill_already_paid": Case(
        "bill_already_paid",
        _pay_the_grants_bill,
        scene={"bill": {"total": AMOUNT}, "max_uses": 2},
        setup=_pay_the_bill,
    ),
    "bill_terms_mismatch": Case(
        "bill_terms_mismatch", _pay_the_grants_bill, scene={"bill": {"total": AMOUNT + 1}}
    ),
    "bill_not_yours": Case("bill_not_yours", _squat_the_bill, scene={"bill": {"total": AMOUNT}}),
}


def test_the_table_covers_every_decline_code() -> None:
    """Every member of DeclineCode is provoked by a real request, and no case expects a code
    the enum does not know."""
    codes = {case.code for case in CASES.values()}
    assert sorted(set(DeclineCode) - codes) == [], "codes no case provokes"
    assert sorted(codes - set(DeclineCode)) == [], "cases for codes not in DeclineCode"


@pytest.mark.parametrize("name", sorted(CASES))
def test_decline_changes_nothing(harness: Harness, name: str) -> None:
    case = CASES[name]
    scene_args = {**case.scene, **(case.late_scene(harness) if case.late_scene else {})}
    scene = harness.scene(**scene_args)
    if case.setup is not None:
        case.setup(harness, scene)
    request = case.attempt(harness, scene)
    seen = {n["notification_id"] for n in scene.owner.client.notifications()}
    before = harness.snapshot()

    answer = request()

    assert answer["status"] == "declined", answer
    assert answer["decline_code"] == case.code, answer
    assert answer["payment_id"] is None and answer["replayed"] is False
    assert case.code in {item["decline_code"] for item in answer["failing"]}
    assert answer["message"]
    after = harness.snapshot()
    assert changed_tables(before, after) == (["notifications"] if case.notified else [])
    new = [n for n in scene.owner.client.notifications() if n["notification_id"] not in seen]
    assert [n["kind"] for n in new] == list(case.notified)
    for note in new:
        assert note.get("grant_id") in (None, scene.grant_id)
    assert harness.audit() == []


def test_fifth_wrong_usage_auth_locks_only_that_grant(harness: Harness) -> None:
    """The one decline that writes a grant row: the 5th mismatch sets status 'locked'."""
    scene = harness.scene()
    wrong = [(scene.grant_id, secrets.token_bytes(32), AMOUNT)]
    for _ in range(4):
        assert scene.pay(AMOUNT, grants=wrong)["decline_code"] == "usage_auth_mismatch"
    before = harness.snapshot()
    assert scene.pay(AMOUNT, grants=wrong)["decline_code"] == "usage_auth_mismatch"
    after = harness.snapshot()
    assert changed_tables(before, after) == ["grants", "notifications"]
    changed = set(after["grants"]) - set(before["grants"])
    assert len(changed) == 1
    (row,) = changed
    assert row[0] == scene.grant_id and "locked" in row
    kinds = [n["kind"] for n in scene.owner.client.notifications()]
    assert kinds == ["usage_auth_mismatch"] * 5 + ["grant_locked"]


def test_declined_key_stores_nothing_and_can_be_reused(harness: Harness) -> None:
    """A decline keeps no idempotency record: the same key then carries a good request."""
    scene = harness.scene()
    key = f"retry-{secrets.token_hex(8)}"
    short = [(scene.grant_id, scene.usage_auth(), AMOUNT - 1)]
    declined = scene.pay(AMOUNT, grants=short, idempotency_key=key)
    assert declined["decline_code"] == "shares_do_not_add_up"
    again = scene.pay(AMOUNT, grants=short, idempotency_key=key)
    assert again["decline_code"] == "shares_do_not_add_up" and again["replayed"] is False
    approved = _approved(scene.pay(AMOUNT, idempotency_key=key))
    assert approved["replayed"] is False
