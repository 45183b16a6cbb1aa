"""The receipt state machine: every arrow of its diagram, nothing else, settled receipts
that never move again, the baseline shift after a charge, and the receipt file."""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Callable
from itertools import product
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfcpay import crypto
from nfcpay.errors import ConfigError
from nfcpay.records import ChallengeRecord, ResultRecord
from nfcpay.records.samples import sample_records
from nfcpay.terminals.held import GrantStatus, HeldGrant, HeldGrants, Share
from nfcpay.terminals.home import TerminalHome
from nfcpay.terminals.receipts import (
    EXACT_MESSAGE,
    SETTLED_MESSAGE,
    UNSETTLED,
    IllegalTransition,
    Receipt,
    Receipts,
    ReceiptShare,
    ReceiptStatus,
    record_result,
    settle,
)
from nfcpay.terminals.wallet import refresh
from tests.support.states import RECEIPT_FILE, ServerView, receipts

S = ReceiptStatus
APPROVED = ResultRecord(
    approved=True, currency="KRW", amount=7_000, payment_id="p_1", approval_code="A7K2Q9"
)
DECLINED = ResultRecord(
    approved=False, currency="KRW", amount=7_000, decline_code="over_limit", message="no"
)
PENDING = ResultRecord(
    approved=False, currency="KRW", amount=7_000, decline_code="pending", message="server down"
)


def a_receipt(status: ReceiptStatus = S.SENT, **fields: Any) -> Receipt:
    return dataclasses.replace(Receipt.from_json(RECEIPT_FILE), status=status, **fields)


#: A charge of the same grant, elsewhere (a retried tap that was approved).
RETRY = a_receipt(S.APPROVED, receipt_id="rc_retry")

EVENTS: dict[str, Callable[[Receipt], Receipt]] = {
    "result: approved": lambda r: r.with_result(APPROVED),
    "result: declined": lambda r: r.with_result(DECLINED),
    "result: pending": lambda r: r.with_result(PENDING),
    "link lost": lambda r: r.link_lost("the link dropped"),
    "settled: charged": lambda r: r.settle(True),
    "settled: not charged": lambda r: r.settle(False),
    "settled: the server's payment": lambda r: r.charged_as("p_9", "B1C2D3"),
    "baseline past a charge": lambda r: r.baseline_past(RETRY),
}

#: The state diagram in nfcpay.terminals.receipts: (from, event) → to; no arrow, refused.
ARROWS = {
    (S.SENT, "result: approved"): S.APPROVED,
    (S.SENT, "result: declined"): S.DECLINED,
    (S.SENT, "result: pending"): S.PENDING,
    (S.SENT, "link lost"): S.UNKNOWN,
    (S.SENT, "settled: charged"): S.APPROVED,
    (S.SENT, "settled: not charged"): S.NOT_CHARGED,
    (S.UNKNOWN, "settled: charged"): S.APPROVED,
    (S.UNKNOWN, "settled: not charged"): S.NOT_CHARGED,
    (S.PENDING, "settled: charged"): S.APPROVED,
    (S.PENDING, "settled: not charged"): S.PENDING,
    **{(status, "baseline past a charge"): status for status in UNSETTLED},
    **{(status, "settled: the server's payment"): S.APPROVED for status in UNSETTLED},
}


@pytest.mark.parametrize(("status", "event"), list(product(ReceiptStatus, EVENTS)))
def test_every_transition_follows_the_state_diagram(status: ReceiptStatus, event: str) -> None:
    before = a_receipt(status)
    if (status, event) not in ARROWS:
        with pytest.raises(IllegalTransition, match=f"{before.receipt_id} is {status}"):
            EVENTS[event](before)
        return
    after = EVENTS[event](before)
    assert after.status is ARROWS[status, event]
    assert after.receipt_id == before.receipt_id and after.created_at == before.created_at


def test_settled_and_unsettled_split_the_states() -> None:
    settled = {status for status in ReceiptStatus if a_receipt(status).is_settled}
    assert settled == {S.APPROVED, S.DECLINED, S.NOT_CHARGED} == set(ReceiptStatus) - UNSETTLED


@given(st.lists(st.sampled_from(sorted(EVENTS)), max_size=12))
def test_a_settled_receipt_never_moves_again(events: list[str]) -> None:
    receipt = a_receipt(S.SENT)
    settled_as = None
    for event in events:
        arrow = ARROWS.get((receipt.status, event))
        if arrow is None:
            with pytest.raises(IllegalTransition):
                EVENTS[event](receipt)
        else:
            receipt = EVENTS[event](receipt)
            assert receipt.status is arrow
        if settled_as is not None:
            assert receipt.status is settled_as
        elif receipt.is_settled:
            settled_as = receipt.status


def test_a_result_is_kept_as_the_merchant_sent_it() -> None:
    sent = a_receipt(S.SENT, message="")
    approved = sent.with_result(APPROVED)
    assert (approved.payment_id, approved.approval_code, approved.decline_code) == (
        "p_1",
        "A7K2Q9",
        None,
    )
    declined = sent.with_result(DECLINED)
    assert (declined.decline_code, declined.message, declined.payment_id) == (
        "over_limit",
        "no",
        None,
    )
    pending = sent.with_result(PENDING)  # "pending" is no decision, so no decline code
    assert (pending.decline_code, pending.message) == (None, "server down")


def test_the_servers_payment_settles_a_receipt_with_its_id_and_approval_code() -> None:
    for status in UNSETTLED:
        settled = a_receipt(status).charged_as("p_9", "B1C2D3")
        assert (settled.payment_id, settled.approval_code, settled.message) == (
            "p_9",
            "B1C2D3",
            EXACT_MESSAGE,
        )


def test_settling_says_so_and_a_pending_receipt_not_charged_is_left_as_it_is() -> None:
    assert a_receipt(S.UNKNOWN).settle(False).message == SETTLED_MESSAGE
    assert a_receipt(S.PENDING).settle(True).message == SETTLED_MESSAGE
    pending = a_receipt(S.PENDING)
    assert pending.settle(False) is pending


def test_a_new_receipt_is_sent_with_the_baseline_of_its_grants() -> None:
    held = HeldGrant.received(sample_records()["grant"])
    challenge = ChallengeRecord(
        merchant_id="m_abc", currency="KRW", amount=7_000, nonce=bytes(16), purpose="5812"
    )
    receipt = Receipt.new(challenge, [Share(held, 7_000)])
    assert receipt.status is S.SENT and receipt.created_at == receipt.updated_at
    assert receipt.grants == (ReceiptShare(held.grant_id, 7_000, 3, 50_000),)
    assert (receipt.bill_id, receipt.own_source_id, receipt.own_amount) == (None, None, 0)
    assert receipt.challenge == crypto.b64e(bytes(16))  # what the server is asked about it


# --- the baseline shift -----------------------------------------------------------------------

POOL = ("g_a", "g_b", "g_c")
pooled_shares = st.dictionaries(st.sampled_from(POOL), st.integers(1, 5_000), min_size=1).map(
    lambda amounts: tuple(
        ReceiptShare(grant_id, amount, 40, 200_000) for grant_id, amount in amounts.items()
    )
)
unsettled = receipts(st.sampled_from(sorted(UNSETTLED)), pooled_shares)
charges = st.lists(receipts(st.just(S.APPROVED), pooled_shares), max_size=6)


@given(unsettled, charges, st.randoms())
def test_the_baseline_moves_past_every_charge_in_any_order(
    receipt: Receipt, charged: list[Receipt], random: Any
) -> None:
    uses, spent = Counter[str](), Counter[str]()
    for other in charged:
        for share in other.grants:
            uses[share.grant_id] += 1
            spent[share.grant_id] += share.amount
    shuffled = list(charged)
    random.shuffle(shuffled)
    for order in (charged, shuffled):
        moved = receipt
        for other in order:
            moved = moved.baseline_past(other)
        assert moved.status is receipt.status
        assert [(s.grant_id, s.amount) for s in moved.grants] == [
            (s.grant_id, s.amount) for s in receipt.grants
        ]
        assert [(s.remaining_uses_before, s.remaining_amount_before) for s in moved.grants] == [
            (
                s.remaining_uses_before - uses[s.grant_id],
                s.remaining_amount_before - spent[s.grant_id],
            )
            for s in receipt.grants
        ]


@given(receipts(st.sampled_from(sorted(set(ReceiptStatus) - UNSETTLED))), receipts())
def test_only_unsettled_receipts_move_past_an_approved_one(
    settled: Receipt, other: Receipt
) -> None:
    with pytest.raises(IllegalTransition):
        settled.baseline_past(other)
    if other.status is not S.APPROVED:
        with pytest.raises(IllegalTransition):
            a_receipt(S.UNKNOWN).baseline_past(other)


# --- through the home: one lost tap among taps that got their result ---------------------


def hold(home: TerminalHome, grant_id: str) -> None:
    record = dataclasses.replace(
        sample_records()["grant"],
        grant_id=grant_id,
        amount_cap=200_000,
        remaining_amount=200_000,
        per_use_cap=None,
        max_uses=40,
    )
    HeldGrants(home).put(HeldGrant.received(record))


def tap(home: TerminalHome, amounts: dict[str, int], *, exact: bool = True) -> Receipt:
    """A receipt for a fresh challenge; without ``exact``, as written before nfcpay kept the
    challenge (so it can only be inferred)."""
    grants = HeldGrants(home)
    challenge = ChallengeRecord(
        merchant_id="m_abc", currency="KRW", amount=sum(amounts.values()), nonce=os.urandom(16)
    )
    receipt = Receipt.new(challenge, [Share(grants.get(g), a) for g, a in amounts.items()])
    if not exact:
        receipt = dataclasses.replace(receipt, challenge=None)
    Receipts(home).put(receipt)
    return receipt


taps = st.dictionaries(st.sampled_from(POOL), st.integers(1, 5_000), min_size=1)


@settings(max_examples=40, deadline=None)
@given(
    answered=st.lists(st.tuples(taps, st.booleans()), max_size=5),
    lost=taps,
    charged=st.booleans(),
    position=st.integers(0, 5),
    exact=st.booleans(),
)
def test_a_lost_tap_settles_as_the_server_charged_it_whatever_came_after(
    tmp_path_factory: pytest.TempPathFactory,
    answered: list[tuple[dict[str, int], bool]],
    lost: dict[str, int],
    charged: bool,
    position: int,
    exact: bool,
) -> None:
    """Answered taps (approved or declined) before and after a tap whose result was lost
    (charged or not), then ``target wallet``: the lost tap is settled as the server did it,
    however many retries were charged meanwhile, and the answered ones stay as they were.
    ``exact``: the server is asked about the lost tap's challenge, and a tap it has no
    payment for stays unknown; else (an old receipt) it is inferred from the grants."""
    home = TerminalHome(tmp_path_factory.mktemp("target"))
    server_view = ServerView()
    server = {grant_id: [200_000, 40] for grant_id in POOL}
    for grant_id in POOL:
        hold(home, grant_id)

    def charge(amounts: dict[str, int]) -> None:
        for grant_id, amount in amounts.items():
            server[grant_id][0] -= amount
            server[grant_id][1] -= 1

    answered_as = {}
    sequence: list[tuple[dict[str, int], bool | None]] = list(answered)
    sequence.insert(min(position, len(answered)), (lost, None))
    for amounts, approved in sequence:
        receipt = tap(home, amounts, exact=exact)
        if approved is None:
            lost_id = receipt.receipt_id
            Receipts(home).put(receipt.link_lost("the link dropped"))
            if charged:
                charge(amounts)
                nonce = crypto.b64d(receipt.challenge) if receipt.challenge else b""
                server_view.charge("m_abc", nonce, "p_lost", "L0ST01")
            continue
        if approved:
            charge(amounts)
        answered_as[receipt.receipt_id] = record_result(
            home, receipt, APPROVED if approved else DECLINED
        ).status

    views = [
        {
            "grant_id": grant_id,
            "issuing_terminal": HeldGrants(home).get(grant_id).record.issuing_terminal,
            "remaining_amount": a,
            "remaining_uses": u,
            "status": "active",
        }
        for grant_id, (a, u) in server.items()
    ]
    server_view.views = views
    refresh(home, server_view)  # type: ignore[arg-type]
    statuses = {r.receipt_id: r.status for r in Receipts(home).each()}
    not_charged = S.UNKNOWN if exact else S.NOT_CHARGED
    assert statuses.pop(lost_id) is (S.APPROVED if charged else not_charged)
    assert statuses == answered_as
    assert len(server_view.asked) == exact


def test_settle_leaves_a_pending_receipt_the_server_has_not_charged(tmp_path: Path) -> None:
    home = TerminalHome(tmp_path)
    hold(home, "g_a")
    receipt = record_result(home, tap(home, {"g_a": 3_000}), PENDING)
    path = tmp_path / "receipts" / f"{receipt.receipt_id}.json"
    written = path.read_bytes()
    assert settle(home, receipt) is receipt
    assert path.read_bytes() == written
    assert HeldGrants(home).get("g_a").last_known.status is GrantStatus.ACTIVE


# --- the receipt file ---------------------------------------------------------------------------


@given(receipts())
def test_a_receipt_round_trips_through_its_json(receipt: Receipt) -> None:
    text = json.dumps(receipt.to_json(), sort_keys=True)
    assert Receipt.from_json(json.loads(text)) == receipt
    kept = {"challenge"} if receipt.challenge is not None else set()
    assert set(json.loads(text)) == set(RECEIPT_FILE) | kept


def test_a_receipt_file_of_today_loads_and_is_written_back_unchanged(tmp_path: Path) -> None:
    home = TerminalHome(tmp_path)
    home.put("receipts", RECEIPT_FILE["receipt_id"], RECEIPT_FILE)
    path = tmp_path / "receipts" / f"{RECEIPT_FILE['receipt_id']}.json"
    before = path.read_bytes()
    receipt = Receipts(home).get(RECEIPT_FILE["receipt_id"])
    assert receipt.status is S.UNKNOWN
    assert receipt.grants == (ReceiptShare("g_3fz7q2m4k9xw6a5b", 7_000, 2, 30_000),)
    Receipts(home).put(receipt)
    assert path.read_bytes() == before
    assert receipt.to_json() == RECEIPT_FILE


def test_a_receipt_written_before_group_bills_still_loads(tmp_path: Path) -> None:
    old = {
        k: v for k, v in RECEIPT_FILE.items() if k not in ("bill_id", "own_source_id", "own_amount")
    }
    home = TerminalHome(tmp_path)
    home.put("receipts", old["receipt_id"], old)
    receipt = Receipts(home).get(old["receipt_id"])
    assert (receipt.bill_id, receipt.own_source_id, receipt.own_amount) == (None, None, 0)


def test_a_receipt_file_with_a_damaged_challenge_is_named(tmp_path: Path) -> None:
    home = TerminalHome(tmp_path)
    home.put(
        "receipts", "rc_damaged", {**RECEIPT_FILE, "receipt_id": "rc_damaged", "challenge": "*"}
    )
    with pytest.raises(ConfigError, match=r"receipts/rc_damaged\.json .* is not a receipt"):
        Receipts(home).get("rc_damaged")
