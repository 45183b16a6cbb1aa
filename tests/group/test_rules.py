"""Issue 5's server rules for one bill, through the in-process app."""

from __future__ import annotations

import secrets

import pytest

from nfcpay import crypto
from nfcpay.errors import ApiError
from nfcpay.testing.server import InProcessServer, build_signed_means, state_snapshot
from tests.support.group import Group


def _group(app: InProcessServer, members: int = 3) -> Group:
    group = Group.create(app.url, http=app.http)
    for _ in range(members):
        group.add_member()
    return group


def test_exact_bill_charges_every_share_and_the_collector(app: InProcessServer) -> None:
    group = _group(app)
    bill = group.open_bill(100_000)
    for member, share in zip(group.members, (30_000, 25_000, 20_000), strict=True):
        group.issue(member, share, bill)
    answer = group.pay(100_000, bill, own_amount=25_000)
    assert answer["status"] == "approved", answer
    assert sorted(s["amount"] for s in answer["shares"]) == [20_000, 25_000, 25_000, 30_000]
    charged = group.charged()
    assert charged[group.own_source["source_id"]] == 25_000
    for member in group.members:
        assert charged[member.source["source_id"]] == member.share
        assert member.terminal.client.get_grant(member.grant_id)["remaining_uses"] == 0
    assert app.audit() == []


def test_remainder_mode_charges_the_collector_what_is_left(app: InProcessServer) -> None:
    group = _group(app)
    bill = group.open_bill(100_000, mode="remainder")
    for member in group.members:
        group.issue(member, 33_333, bill)
    answer = group.pay(100_000, bill, split_mode="remainder", own_amount=100_000 - 99_999)
    assert answer["status"] == "approved", answer
    assert group.charged()[group.own_source["source_id"]] == 1
    assert app.audit() == []


def test_exact_mode_names_the_difference(app: InProcessServer) -> None:
    group = _group(app, members=2)
    bill = group.open_bill(25_000)
    for member in group.members:
        group.issue(member, 10_000, bill)
    answer = group.pay(25_000, bill, own_amount=4_000)
    assert answer["decline_code"] == "shares_do_not_add_up"
    assert "1,000 KRW short of" in answer["message"]


def test_remainder_mode_declines_a_negative_remainder(app: InProcessServer) -> None:
    group = _group(app, members=2)
    bill = group.open_bill(15_000, mode="remainder")
    for member in group.members:
        group.issue(member, 10_000, bill)
    answer = group.pay(15_000, bill, split_mode="remainder")
    assert answer["decline_code"] == "shares_do_not_add_up"
    assert "exceed the amount" in answer["message"] and "5,000 KRW" in answer["message"]


def test_a_bill_cannot_be_paid_twice(app: InProcessServer) -> None:
    group = _group(app, members=1)
    bill = group.open_bill(15_000)
    group.issue(group.members[0], 10_000, bill)
    assert group.pay(15_000, bill, own_amount=5_000)["status"] == "approved"
    before = app.query(state_snapshot)
    again = group.pay(5_000, bill, members=[], own_amount=5_000)
    assert again["decline_code"] == "bill_already_paid", again
    assert app.query(state_snapshot) == before


def test_one_failing_share_declines_all_and_the_others_stay_usable(app: InProcessServer) -> None:
    group = _group(app, members=2)
    poor = group.add_member(wallet=5_000)
    bill = group.open_bill(35_000)
    for member in group.members:
        group.issue(member, 10_000, bill)
    before = app.query(state_snapshot)
    answer = group.pay(35_000, bill, own_amount=5_000)
    assert answer["status"] == "declined"
    assert answer["failing"] == [
        {
            "grant_id": poor.grant_id,
            "decline_code": "insufficient_balance",
            "message": answer["failing"][0]["message"],
        }
    ]
    assert app.query(state_snapshot) == before
    # The collector drops the poor member and covers the share itself: the others' grants
    # were left untouched and pay now.
    retry = group.pay(35_000, bill, members=group.members[:2], own_amount=15_000)
    assert retry["status"] == "approved", retry
    assert app.audit() == []


def test_own_share_failure_names_the_source(app: InProcessServer) -> None:
    group = Group.create(app.url, http=app.http, own_balance=1_000)
    group.add_member()
    bill = group.open_bill(15_000)
    group.issue(group.members[0], 10_000, bill)
    answer = group.pay(15_000, bill, own_amount=5_000)
    assert answer["failing"] == [
        {
            "source_id": group.own_source["source_id"],
            "decline_code": "insufficient_balance",
            "message": answer["failing"][0]["message"],
        }
    ]


def test_member_notifications_show_share_merchant_and_bill(app: InProcessServer) -> None:
    group = _group(app, members=2)
    bill = group.open_bill(24_000)
    for member in group.members:
        group.issue(member, 12_000, bill)
    assert group.pay(24_000, bill)["status"] == "approved"
    for member in group.members:
        used = [n for n in member.terminal.client.notifications() if n["kind"] == "grant_used"]
        assert len(used) == 1
        note = used[0]
        assert (note["amount"], note["bill_id"]) == (12_000, bill)
        assert note["merchant_id"] == group.merchant.merchant_id
        assert bill in note["message"] and "12,000 KRW" in note["message"]


def test_grant_outside_its_bill_is_declined_and_the_member_told(app: InProcessServer) -> None:
    group = _group(app, members=1)
    member = group.members[0]
    bill = group.open_bill(10_000)
    group.issue(member, 10_000, bill)
    for other_bill in (None, group.open_bill(10_000)):
        answer = group.pay(10_000, other_bill)
        assert answer["failing"][0]["decline_code"] == "bill_mismatch"
    notes = [n for n in member.terminal.client.notifications() if n["kind"] == "bill_mismatch"]
    assert len(notes) == 2 and all(bill in n["message"] for n in notes)
    assert group.pay(10_000, bill)["status"] == "approved"


def test_grant_presented_by_another_terminal_is_declined_and_notified(
    app: InProcessServer,
) -> None:
    group = _group(app, members=1)
    member = group.members[0]
    bill = group.open_bill(10_000)
    group.issue(member, 10_000, bill)
    stranger = Group.create(app.url, http=app.http).collector
    usage_auth = member.usage_auth(group.collector)  # a copy of the collector's payload
    answer = group.pay(10_000, bill, presenter=stranger, usage_auths={member.grant_id: usage_auth})
    assert answer["failing"][0]["decline_code"] == "terminal_not_allowed"
    notes = member.terminal.client.notifications()
    assert [n["kind"] for n in notes] == ["terminal_not_allowed"]
    assert notes[0]["bill_id"] == bill and notes[0]["amount"] == 10_000


def test_the_signature_binds_the_bill(app: InProcessServer) -> None:
    """A relay cannot move signed means to another bill or split mode."""
    group = _group(app, members=1)
    member = group.members[0]
    group.issue(member, 10_000, None)
    bill = group.open_bill(10_000)
    # Signed for no bill, sent for a bill: the signature does not match.
    challenge = secrets.token_bytes(16)
    means = build_signed_means(
        group.collector,
        merchant=group.merchant,
        challenge=challenge,
        amount=10_000,
        currency="KRW",
        grants=[(member.grant_id, member.usage_auth(group.collector), 10_000)],
    )
    for extra in ({"bill_id": bill}, {"split_mode": "remainder"}):
        answer = group.merchant.client.authorize_payment(
            amount=10_000, currency="KRW", challenge=challenge, means=means, **extra
        )
        assert answer["decline_code"] == "bad_signature", answer


def test_a_member_grant_names_only_an_open_bill(app: InProcessServer) -> None:
    """A grant naming a bill no collector opened, a paid bill, or a bill in another currency
    is refused at issue, with a sentence, and nothing is written."""
    group = _group(app, members=1)
    member = group.members[0]
    bill = group.open_bill(10_000)
    group.issue(member, 10_000, bill)
    assert group.pay(10_000, bill)["status"] == "approved"
    usd = group.collector.client.open_bill(total=10, currency="USD")["bill_id"]
    before = app.query(state_snapshot)
    cases = [
        (crypto.new_id("b"), 422, "bill_not_found", "upgrade nfcpay"),
        (bill, 409, "bill_already_paid", f"bill {bill} is already paid"),
        (usd, 422, "currency_mismatch", f"bill {usd} is in USD, the grant in KRW"),
    ]
    for named, status, code, said in cases:
        with pytest.raises(ApiError) as refused:
            group.issue(member, 10_000, named)
        assert (refused.value.status, refused.value.code) == (status, code)
        assert said in refused.value.message
    assert app.query(state_snapshot) == before
