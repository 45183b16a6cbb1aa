"""Hypothesis: random bills (totals, member counts, shares, failures) against a simple model.

The model: a bill is approved iff the arithmetic of its split mode holds and no share fails;
then every source is charged exactly its share. Otherwise nothing changes at all, and the
decline names exactly the failing members' grants.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfcpay.testing.server import InProcessServer, state_snapshot
from tests.support.group import Group

FAULTS = ("none", "revoked", "over_cap", "low_funds", "other_bill", "wrong_auth")


@dataclass(frozen=True)
class Plan:
    shares: list[int]
    faults: list[str]
    own: int
    mode: str
    skew: int  # added to the charged amount: breaks the arithmetic when non-zero


plans = st.integers(1, 4).flatmap(
    lambda n: st.builds(
        Plan,
        shares=st.lists(st.integers(2, 50_000), min_size=n, max_size=n),
        faults=st.lists(
            st.sampled_from(FAULTS).filter(lambda f: f == "none") | st.sampled_from(FAULTS),
            min_size=n,
            max_size=n,
        ),
        own=st.integers(0, 30_000),
        mode=st.sampled_from(["exact", "remainder"]),
        skew=st.sampled_from([0, 0, 0, -1, 1, -40_000]),
    )
)


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    path: Path = tmp_path_factory.mktemp("group-model")
    with InProcessServer(path) as server:
        yield server


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans)
def test_random_bills_match_the_model(shared_app: InProcessServer, plan: Plan) -> None:
    app = shared_app
    group = Group.create(app.url, http=app.http)
    bill = group.open_bill(sum(plan.shares) + plan.own, mode=plan.mode)
    failing: set[str] = set()
    usage_auths: dict[str, bytes] = {}
    for share, fault in zip(plan.shares, plan.faults, strict=True):
        member = group.add_member(wallet=share - 1 if fault == "low_funds" else 10**6)
        cap = share - 1 if fault == "over_cap" else share
        group.issue(
            member, share, group.open_bill(share) if fault == "other_bill" else bill, amount_cap=cap
        )
        if fault == "revoked":
            member.terminal.client.revoke_grant(member.grant_id)
        if fault == "wrong_auth":
            usage_auths[member.grant_id] = bytes(32)
        if fault != "none":
            failing.add(member.grant_id)
    granted = sum(plan.shares)
    amount = granted + plan.own + plan.skew
    if amount <= 0:
        return
    remainder = amount - granted
    arithmetic_ok = plan.skew == 0 or (plan.mode == "remainder" and remainder >= 0)
    own_amount = plan.own if plan.mode == "exact" else max(remainder, 0)
    before = app.query(state_snapshot)
    answer = group.pay(
        amount, bill, own_amount=own_amount or None, split_mode=plan.mode, usage_auths=usage_auths
    )
    if arithmetic_ok and not failing:
        assert answer["status"] == "approved", answer
        charged = group.charged()
        for member in group.members:
            assert charged[member.source["source_id"]] == member.share
        assert charged[group.own_source["source_id"]] == amount - granted
    else:
        assert answer["status"] == "declined", answer
        assert app.query(state_snapshot) == before
        if arithmetic_ok:
            named = {item.get("grant_id") for item in answer["failing"]}
            assert named == failing, answer
        else:
            assert answer["decline_code"] == "shares_do_not_add_up"
    assert app.audit() == []
