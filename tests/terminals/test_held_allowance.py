"""A held grant's allowance as the target knows it: what is left of the interval (the
server's word until that interval ends), what a payment may take from it, and the wallet's
line for it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nfcpay.allowance import Period
from nfcpay.cli.target import allowance_line
from nfcpay.errors import Declined
from nfcpay.records import ChallengeRecord
from nfcpay.records.samples import sample_records
from nfcpay.terminals.held import (
    GrantStatus,
    HeldGrant,
    HeldGrants,
    LastKnown,
    allowance_left,
    capacity,
    choose_shares,
    usable,
)
from nfcpay.terminals.home import Identity, TerminalHome
from nfcpay.terminals.wallet import wallet_view

SAMPLE = sample_records()["grant"]
#: 10,000 KRW a day in Seoul, on a grant with 50,000 KRW left and a 20,000 KRW per-use cap.
DAILY = dataclasses.replace(
    SAMPLE,  # type: ignore[type-var]
    allowance_period=Period.DAY,
    allowance_amount=10_000,
    time_zone="Asia/Seoul",
    valid_until=None,
)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def held(left: int | None, renews_in: timedelta = timedelta(hours=3)) -> HeldGrant:
    """DAILY as the server last described it: ``left`` of today, renewing ``renews_in`` from
    now (None: the server never said)."""
    renews = None if left is None else _iso(datetime.now(UTC) + renews_in)
    known = LastKnown(50_000, 3, GrantStatus.ACTIVE, "2036-12-03T05:00:00Z", left, renews)
    return HeldGrant(DAILY, "2036-12-03T04:00:00Z", known)


def challenge(amount: int) -> ChallengeRecord:
    return ChallengeRecord(
        merchant_id="m_shop", currency="KRW", amount=amount, nonce=bytes(16), purpose="5812"
    )


def test_a_payment_may_take_what_is_left_of_today() -> None:
    assert (allowance_left(held(3_000)), capacity(held(3_000))) == (3_000, 3_000)


def test_once_the_interval_is_over_all_of_the_allowance_is_left() -> None:
    gone = held(0, renews_in=-timedelta(seconds=1))
    assert (allowance_left(gone), capacity(gone)) == (10_000, 10_000)
    assert usable(gone, challenge(1))


def test_a_fresh_grant_has_all_of_its_allowance() -> None:
    assert capacity(HeldGrant.received(DAILY)) == 10_000


def test_a_spent_allowance_is_not_offered() -> None:
    assert not usable(held(0), challenge(1))


def test_a_charge_counts_down_the_allowance_until_it_renews() -> None:
    after = held(3_000).charged(2_000)
    assert after.last_known.allowance_left == 1_000
    renews = datetime.fromisoformat(str(after.last_known.allowance_renews_at))
    assert renews.astimezone(UTC).time().isoformat() == "15:00:00", "midnight in Seoul"


def test_choose_shares_offers_no_more_than_the_allowance_left(tmp_path: Path) -> None:
    home = TerminalHome(tmp_path)
    home.save_identity(Identity("t_k7x2m4q9w3b5n8c6", "target", "phone", "http://x", "KRW"))
    HeldGrants(home).put(held(3_000))
    assert [share.amount for share in choose_shares(home, challenge(3_000))] == [3_000]
    with pytest.raises(Declined, match="cover 3,000 KRW of 5,000 KRW"):
        choose_shares(home, challenge(5_000))


def test_the_wallet_line_says_what_is_left_and_when_it_renews() -> None:
    view = wallet_view(held(7_000), {})
    view["allowance_renews_at"] = "2036-12-03T15:00:00.000Z"
    assert allowance_line(view) == (
        f"{DAILY.grant_id}: 7,000 KRW of 10,000 KRW left today (renews 00:00 Asia/Seoul)"
    )
    weekly = {**view, "allowance_period": "week", "allowance_renews_at": "2036-12-07T15:00:00Z"}
    assert allowance_line(weekly) == (
        f"{DAILY.grant_id}: 7,000 KRW of 10,000 KRW left this week "
        "(renews Mon 8 Dec 00:00 Asia/Seoul)"
    )


def test_a_grant_without_an_allowance_has_no_line_and_no_allowance_keys() -> None:
    plain = HeldGrant.received(SAMPLE)
    view = wallet_view(plain, {})
    assert allowance_line(view) is None
    assert allowance_left(plain) is None
    assert not {"allowance_period", "allowance_left", "time_zone"} & set(view)
