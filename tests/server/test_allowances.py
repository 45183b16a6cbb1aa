"""Allowances on the server (SQLite, and PostgreSQL when configured): a grant's cap that
renews every day, week or month in its issuer's time zone, driven by the fake clock that the
server and the test's terminals share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from nfcpay.declines import DeclineCode
from nfcpay.errors import ApiError
from nfcpay.testing.server import PaymentScene
from tests.support.harness import Api

#: Wed 3 Dec 2036, 14:00 in Seoul.
WEDNESDAY_2PM = datetime(2036, 12, 3, 5, tzinfo=UTC).timestamp()
#: Seconds from then to the next midnight in Seoul.
TO_MIDNIGHT = 10 * 3_600
DAILY = {"period": "day", "amount": 10_000, "time_zone": "Asia/Seoul"}


def _on_the_clock(api: Api, **rights: Any) -> PaymentScene:
    """A scene whose grant has ``rights``, with the server and its terminals at Wednesday
    2 pm in Seoul (terminals sign with the server's clock, so it may jump days)."""
    rights.setdefault("allowance", DAILY)
    scene = api.scene(amount_cap=100_000, max_uses=50, **rights)
    api.clock.now = WEDNESDAY_2PM
    for terminal in (scene.owner, scene.target, scene.merchant):
        terminal.client.clock = api.clock
    return scene


def test_an_allowance_declines_past_it_today_and_pays_again_tomorrow(api: Api) -> None:
    """The acceptance case: 10,000 KRW a day, declined at 10,001 KRW with the renewal named,
    paid in full again the next day."""
    scene = _on_the_clock(api)
    before = api.snapshot()
    over = scene.pay(10_001)
    assert (over["status"], over["decline_code"]) == ("declined", DeclineCode.ALLOWANCE_EXCEEDED)
    assert over["message"] == (
        f"10,001 KRW is over grant {scene.grant_id}'s allowance: 10,000 KRW of 10,000 KRW is "
        "left today; it renews Thu 4 Dec 00:00 Asia/Seoul"
    )
    assert api.snapshot() == before, "a decline changes nothing"
    assert scene.pay(3_000)["status"] == "approved"
    assert scene.pay(7_000)["status"] == "approved"
    api.clock.advance(TO_MIDNIGHT - 1)
    late = scene.pay(1)
    assert late["decline_code"] == DeclineCode.ALLOWANCE_EXCEEDED
    assert "0 KRW of 10,000 KRW is left today" in late["message"]
    api.clock.advance(1)
    assert scene.pay(10_000)["status"] == "approved"
    grant = scene.owner.client.get_grant(scene.grant_id)
    assert grant["remaining_amount"] == 80_000
    assert grant["rights"]["allowance"] == DAILY
    assert (grant["allowance_left"], grant["allowance_renews_at"]) == (
        0,
        "2036-12-04T15:00:00.000Z",
    )
    assert api.audit() == []


def test_the_lifetime_cap_still_binds_under_an_allowance(api: Api) -> None:
    scene = _on_the_clock(api)
    scene = scene.another_grant(amount_cap=12_000, max_uses=5, allowance=DAILY)
    assert scene.pay(10_000)["status"] == "approved"
    api.clock.advance(TO_MIDNIGHT)
    assert scene.pay(2_001)["decline_code"] == DeclineCode.OVER_REMAINING_CAP
    assert scene.owner.client.get_grant(scene.grant_id)["allowance_left"] == 10_000


def test_a_weekly_allowance_renews_on_monday(api: Api) -> None:
    scene = _on_the_clock(api, allowance={**DAILY, "period": "week"})
    assert scene.pay(10_000)["status"] == "approved"
    api.clock.advance(TO_MIDNIGHT + 3 * 86_400 + 86_400 - 1)  # Sunday, 23:59:59
    assert scene.pay(1)["message"].endswith("it renews Mon 8 Dec 00:00 Asia/Seoul")
    api.clock.advance(1)
    assert scene.pay(10_000)["status"] == "approved"


def test_a_refund_gives_this_intervals_spending_back(api: Api) -> None:
    """A refund of a payment made in the current interval gives it back to the allowance;
    one made in an earlier interval gives back only the lifetime cap."""
    scene = _on_the_clock(api)
    yesterday = scene.pay(6_000)
    api.clock.advance(TO_MIDNIGHT)
    today = scene.pay(10_000)
    scene.merchant.client.refund(yesterday["payment_id"], 6_000)
    assert scene.owner.client.get_grant(scene.grant_id)["allowance_left"] == 0
    scene.merchant.client.refund(today["payment_id"], 4_000)
    grant = scene.owner.client.get_grant(scene.grant_id)
    assert (grant["allowance_left"], grant["remaining_amount"]) == (4_000, 94_000)
    assert scene.pay(4_001)["decline_code"] == DeclineCode.ALLOWANCE_EXCEEDED
    assert scene.pay(4_000)["status"] == "approved"
    assert api.audit() == []


def test_a_grant_without_an_allowance_shows_none(api: Api) -> None:
    scene = api.scene()
    grant = scene.owner.client.get_grant(scene.grant_id)
    assert grant["rights"]["allowance"] is None
    assert "allowance_left" not in grant


@pytest.mark.parametrize(
    ("allowance", "field", "words"),
    [
        ({**DAILY, "time_zone": "Mars/Olympus"}, "rights.allowance.time_zone", "time zone"),
        ({**DAILY, "time_zone": "../../etc/passwd"}, "rights.allowance.time_zone", "IANA"),
        ({**DAILY, "period": "year"}, "rights.allowance.period", "day"),
        ({**DAILY, "amount": 0}, "rights.allowance.amount", "greater than 0"),
        ({**DAILY, "amount": 100_001}, "rights.allowance.amount", "cannot exceed amount_cap"),
        ({"period": "day", "amount": 10_000}, "rights.allowance.time_zone", "required"),
    ],
)
def test_a_bad_allowance_is_refused_and_issues_nothing(
    api: Api, allowance: dict[str, Any], field: str, words: str
) -> None:
    scene = api.scene()
    before = api.snapshot()
    with pytest.raises(ApiError) as caught:
        scene.another_grant(amount_cap=100_000, allowance=allowance)
    assert (caught.value.status, caught.value.field) == (422, field)
    assert words in caught.value.message
    assert api.snapshot() == before
