"""Acceptance 2: every way one member's share can fail declines the whole bill, through a real
server process; nothing changes (balances, grants, ledger, idempotency records) and the
decline names the share. The other members' grants then pay the retry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from nfcpay import crypto
from nfcpay.testing.server import ServerProcess, register_terminal, state_snapshot
from tests.support.group import Group, Member

SHARE = 20_000


@dataclass(frozen=True)
class Fault:
    code: str
    #: Makes the faulty member's grant (or funding) fail; returns usage-auth overrides.
    inject: Callable[[Group, Member, str], dict[str, bytes]]
    notified: str | None = None
    #: Then the server's clock moves this far (seconds), e.g. past the grant's expiry.
    advance_s: float = 0


def _issue(**rights: object) -> Callable[[Group, Member, str], dict[str, bytes]]:
    def inject(group: Group, member: Member, bill: str) -> dict[str, bytes]:
        group.issue(member, SHARE, bill, **rights)  # type: ignore[arg-type]
        return {}

    return inject


def _revoked(group: Group, member: Member, bill: str) -> dict[str, bytes]:
    group.issue(member, SHARE, bill)
    member.terminal.client.revoke_grant(member.grant_id)
    return {}


def _wrong_terminal(group: Group, member: Member, bill: str) -> dict[str, bytes]:
    other = register_terminal(group.url, "target")
    group.issue(member, SHARE, bill, to=other)
    return {}


def _wrong_usage_auth(group: Group, member: Member, bill: str) -> dict[str, bytes]:
    group.issue(member, SHARE, bill)
    return {member.grant_id: crypto.usage_auth(bytes(32), member.grant_id, "t_x", "t_y")}


FAULTS = {
    "limit": Fault("limit_exceeded", _issue(), "limit_declined"),
    "balance": Fault("insufficient_balance", _issue(), "limit_declined"),
    "expired": Fault(
        "grant_expired", _issue(expires_in=timedelta(seconds=30)), "grant_expired", advance_s=31
    ),
    "revoked": Fault("grant_revoked", _revoked),
    "wrong_terminal": Fault("terminal_not_allowed", _wrong_terminal, "terminal_not_allowed"),
    "usage_auth": Fault("usage_auth_mismatch", _wrong_usage_auth, "usage_auth_mismatch"),
    "over_cap": Fault("over_remaining_cap", _issue(amount_cap=SHARE - 1)),
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_one_failing_share_declines_the_whole_bill(server: ServerProcess, name: str) -> None:
    fault = FAULTS[name]
    group = Group.create(server.url)
    fine = [group.add_member(), group.add_member()]
    if name == "limit":
        faulty = group.add_member(card_limit=SHARE - 1)
    elif name == "balance":
        faulty = group.add_member(wallet=SHARE - 1)
    else:
        faulty = group.add_member()
    bill = group.open_bill(3 * SHARE + 5_000)
    for member in fine:
        group.issue(member, SHARE, bill)
    overrides = fault.inject(group, faulty, bill)
    if fault.advance_s:
        server.advance(fault.advance_s)
    seen = {n["notification_id"] for n in faulty.terminal.client.notifications()}

    before = server.query(state_snapshot)
    answer = group.pay(3 * SHARE + 5_000, bill, own_amount=5_000, usage_auths=overrides)
    assert answer["status"] == "declined" and answer["payment_id"] is None, answer
    assert answer["decline_code"] == fault.code
    assert [(f.get("grant_id"), f["decline_code"]) for f in answer["failing"]] == [
        (faulty.grant_id, fault.code)
    ]
    assert server.query(state_snapshot) == before  # balances, grants, ledger, idempotency ...
    fresh = [n for n in faulty.terminal.client.notifications() if n["notification_id"] not in seen]
    assert [n["kind"] for n in fresh] == ([fault.notified] if fault.notified else [])

    # The collector drops the failing member and covers that share: the others' grants pay.
    retry = group.pay(3 * SHARE + 5_000, bill, members=fine, own_amount=SHARE + 5_000)
    assert retry["status"] == "approved", retry
    charged = group.charged()
    assert [charged[m.source["source_id"]] for m in fine] == [SHARE, SHARE]
    assert charged[faulty.source["source_id"]] == 0
    assert charged[group.own_source["source_id"]] == SHARE + 5_000
    assert server.audit() == []
