"""Acceptance 4: racing group payments through a real server process (SQLite, and
PostgreSQL when NFCPAY_TEST_DATABASE_URL is set): a member grant raced into several bills at
once pays at most one; a bill raced by several payments is paid at most once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nfcpay.testing.server import ServerProcess, register_terminal
from tests.support.group import Group

RACERS = 8


def _race(*attempts: Any) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(len(attempts)) as pool:
        return list(pool.map(lambda attempt: attempt(), attempts))


def test_one_member_grant_raced_into_several_bills(any_db_server: ServerProcess) -> None:
    group = Group.create(any_db_server.url)
    member = group.add_member()
    group.issue(member, 10_000, None)  # not bill-bound: any bill of the collector could use it
    bills = [group.open_bill(16_000) for _ in range(RACERS)]
    # Each bill also has its own member's grant: a bill is paid with its members' grants.
    bound = [group.issue(group.add_member(), 1_000, bill) for bill in bills]
    answers = _race(
        *[
            lambda b=b, m=m: group.pay(16_000, b, members=[member, m], own_amount=5_000)
            for b, m in zip(bills, bound, strict=True)
        ]
    )
    approved = [a for a in answers if a["status"] == "approved"]
    assert len(approved) == 1, answers
    assert {a["failing"][0]["decline_code"] for a in answers if a not in approved} <= {
        "no_uses_left",
        "over_remaining_cap",
    }
    assert group.charged()[member.source["source_id"]] == 10_000
    assert any_db_server.audit() == []


def test_a_bill_grant_raced_into_its_bill_and_another(any_db_server: ServerProcess) -> None:
    group = Group.create(any_db_server.url)
    member = group.add_member()
    bill, other = group.open_bill(10_000), group.open_bill(10_000)
    group.issue(member, 10_000, bill)
    answers = _race(*[lambda b=b: group.pay(10_000, b) for b in [bill, other] * (RACERS // 2)])
    assert sum(a["status"] == "approved" for a in answers) == 1, answers
    assert group.charged()[member.source["source_id"]] == 10_000


def test_one_bill_raced_by_several_payments(any_db_server: ServerProcess) -> None:
    group = Group.create(any_db_server.url)
    # Remainder mode: each racer charges another amount, the collector's source the rest.
    bill = group.open_bill(1_500, mode="remainder")
    merchants = [register_terminal(any_db_server.url, "merchant") for _ in range(2)]
    members = [group.issue(group.add_member(), 500, bill) for _ in range(RACERS)]
    answers = _race(
        *[
            lambda i=i: group.pay(
                1_500 + i,
                bill,
                members=[members[i]],
                own_amount=1_000 + i,
                split_mode="remainder",
                merchant=merchants[i % 2],
            )
            for i in range(RACERS)
        ]
    )
    approved = [a for a in answers if a["status"] == "approved"]
    assert len(approved) == 1, answers
    assert {a["decline_code"] for a in answers if a not in approved} == {"bill_already_paid"}
    assert group.charged()[group.own_source["source_id"]] == approved[0]["amount"] - 500
    assert any_db_server.audit() == []
