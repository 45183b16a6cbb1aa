"""Hardening hole 2: a group bill's id travels over NFC to every member, so anyone at the table
knows it. While the collector terminal minted bill ids itself and the server kept no owner,
any terminal pair could issue a grant naming the bill, pay 1 KRW with it at a counter of
their own, and so make the real collector's payment ``bill_already_paid``.

Now the collector opens the bill with the server, and only the collector's terminal presents
a payment for it: anyone else's is declined ``bill_not_yours`` without a write to the bill,
which stays payable by its collector. On SQLite and, with NFCPAY_TEST_DATABASE_URL, PostgreSQL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from nfcpay.errors import ApiError
from nfcpay.testing.server import ServerProcess, state_snapshot
from tests.support.group import Group
from tests.support.hostile import DATABASES, server_on

TOTAL = 30_000
SHARE = 10_000


@pytest.fixture(scope="module", params=DATABASES)
def any_db_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with server_on(request.param, tmp_path_factory.mktemp(f"bills-{request.param}")) as server:
        yield server


def _dinner(server: ServerProcess) -> tuple[Group, str]:
    """A collector's bill of 30,000 KRW: two members' grants of 10,000, its own 10,000."""
    group = Group.create(server.url)
    bill = group.open_bill(TOTAL)
    for _ in range(2):
        group.issue(group.add_member(), SHARE, bill)
    return group, bill


def _pays_the_bill(group: Group, bill: str) -> None:
    paid = group.pay(TOTAL, bill, own_amount=TOTAL - 2 * SHARE)
    assert paid["status"] == "approved", paid
    view = group.collector.client.get_bill(bill)
    assert (view["status"], view["payment_id"]) == ("paid", paid["payment_id"])


def test_a_member_paying_1_krw_first_does_not_block_the_bill(any_db_server: ServerProcess) -> None:
    server = any_db_server
    group, bill = _dinner(server)
    # A member who heard the bill id, with a target terminal and a merchant of their own.
    thief = Group.create(server.url)
    accomplice = thief.issue(thief.add_member(), 1, bill)  # a grant naming the victim's bill
    before = server.query(state_snapshot)

    answer = thief.pay(1, bill, members=[accomplice])

    assert answer["status"] == "declined" and answer["payment_id"] is None, answer
    assert [f["decline_code"] for f in answer["failing"]] == ["bill_not_yours"]
    assert bill in answer["message"] and thief.collector.terminal_id in answer["message"]
    assert server.query(state_snapshot) == before  # the bill's row and everything else
    assert group.collector.client.get_bill(bill)["status"] == "open"
    _pays_the_bill(group, bill)
    # Once paid, a stranger is still told only that the bill is not theirs.
    again = thief.pay(1, bill, members=[accomplice])
    assert again["decline_code"] == "bill_not_yours", again
    assert server.audit() == []


def test_a_stranger_without_any_grant_of_the_bill_is_declined(any_db_server: ServerProcess) -> None:
    server = any_db_server
    group, bill = _dinner(server)
    thief = Group.create(server.url)
    before = server.query(state_snapshot)
    answer = thief.pay(1, bill, members=[], own_amount=1)
    assert answer["decline_code"] == "bill_not_yours", answer
    assert server.query(state_snapshot) == before
    _pays_the_bill(group, bill)


def test_naming_the_collector_without_its_key_is_a_bad_signature(
    any_db_server: ServerProcess,
) -> None:
    """Claiming to be the collector takes its key: the means fail their signature, and the
    bill stays payable."""
    server = any_db_server
    group, bill = _dinner(server)
    thief = Group.create(server.url)
    posing = dataclasses.replace(group.collector, private_key=thief.collector.private_key)
    before = server.query(state_snapshot)
    answer = group.pay(TOTAL, bill, own_amount=TOTAL - 2 * SHARE, presenter=posing)
    assert answer["decline_code"] == "bad_signature", answer
    assert server.query(state_snapshot) == before
    _pays_the_bill(group, bill)


def test_only_the_collector_sees_its_bill(any_db_server: ServerProcess) -> None:
    group, bill = _dinner(any_db_server)
    view = group.collector.client.get_bill(bill)
    assert (view["total"], view["mode"], view["currency"]) == (TOTAL, "exact", "KRW")
    assert sorted(m["member"] for m in view["members"]) == sorted(
        m.terminal.terminal_id for m in group.members
    )
    stranger = Group.create(any_db_server.url).collector
    for who in (stranger, group.members[0].terminal):
        with who.client, pytest.raises(ApiError) as refused:
            who.client.get_bill(bill)
        assert (refused.value.status, refused.value.code) == (404, "bill_not_found")
