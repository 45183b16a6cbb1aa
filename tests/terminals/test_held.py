"""Held grants: their JSON file (today's shape, round trip), the local countdown after a
charge, and which grants are usable."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from nfcpay.errors import ConfigError
from nfcpay.records import ChallengeRecord
from nfcpay.records.samples import sample_records
from nfcpay.terminals.held import (
    GrantStatus,
    HeldGrant,
    HeldGrants,
    LastKnown,
    capacity,
    held_entry,
    usable,
)
from nfcpay.terminals.home import TerminalHome
from tests.support.states import GRANT_FILE, held_grants

SAMPLE = sample_records()["grant"]


@given(held_grants)
def test_a_held_grant_round_trips_through_its_json(held: HeldGrant) -> None:
    text = json.dumps(held.to_json(), sort_keys=True)
    assert HeldGrant.from_json(json.loads(text)) == held


@settings(max_examples=30)
@given(held_grants)
def test_the_store_writes_todays_file_shape(
    tmp_path_factory: pytest.TempPathFactory, held: HeldGrant
) -> None:
    home = TerminalHome(tmp_path_factory.mktemp("target"))
    HeldGrants(home).put(held)
    stored = json.loads((home.path / "grants" / f"{held.grant_id}.json").read_text())
    assert set(stored) == {"grant_id", "record", "received_at", "last_known"}
    assert stored["grant_id"] == held.grant_id
    assert stored["record"] == held.record.to_json(reveal=True)
    assert stored["last_known"] == {
        "remaining_amount": held.last_known.remaining_amount,
        "remaining_uses": held.last_known.remaining_uses,
        "status": held.last_known.status.value,
        "as_of": held.last_known.as_of,
    }
    assert HeldGrants(home).get(held.grant_id) == held


def test_a_file_of_today_loads_and_is_written_back_unchanged(tmp_path: Path) -> None:
    home = TerminalHome(tmp_path)
    home.put("grants", SAMPLE.grant_id, GRANT_FILE)
    before = (tmp_path / "grants" / f"{SAMPLE.grant_id}.json").read_bytes()
    held = HeldGrants(home).get(SAMPLE.grant_id)
    assert held.record == SAMPLE
    assert held.last_known == LastKnown(30_000, 2, GrantStatus.ACTIVE, "2026-11-26T10:00:00+00:00")
    HeldGrants(home).put(held)
    assert (tmp_path / "grants" / f"{SAMPLE.grant_id}.json").read_bytes() == before


def test_a_received_grant_has_all_of_it_left() -> None:
    entry = held_entry(SAMPLE)
    now = entry["received_at"]
    assert entry == {
        **GRANT_FILE,
        "received_at": now,
        "last_known": {
            "remaining_amount": 50_000,
            "remaining_uses": 3,
            "status": "active",
            "as_of": now,
        },
    }


@pytest.mark.parametrize(
    ("amount", "uses", "charge", "after"),
    [
        (10_000, 3, 4_000, (6_000, 2, GrantStatus.ACTIVE)),
        (10_000, 1, 4_000, (6_000, 0, GrantStatus.EXHAUSTED)),
        (10_000, 3, 10_000, (0, 2, GrantStatus.EXHAUSTED)),
        (3_000, 3, 4_000, (0, 2, GrantStatus.EXHAUSTED)),  # never below zero
    ],
)
def test_a_charge_counts_the_grant_down_here(
    amount: int, uses: int, charge: int, after: tuple[int, int, GrantStatus]
) -> None:
    held = HeldGrant.received(SAMPLE)
    held = dataclasses.replace(
        held,
        last_known=dataclasses.replace(
            held.last_known, remaining_amount=amount, remaining_uses=uses
        ),
    )
    known = held.charged(charge).last_known
    assert (known.remaining_amount, known.remaining_uses, known.status) == after


def test_a_charge_keeps_a_status_the_server_gave() -> None:
    held = HeldGrant.received(SAMPLE)
    revoked = dataclasses.replace(
        held, last_known=dataclasses.replace(held.last_known, status=GrantStatus.REVOKED)
    )
    assert revoked.charged(1_000).last_known.status is GrantStatus.REVOKED


def challenge(**extra: Any) -> ChallengeRecord:
    fields = {"merchant_id": "m_shop", "currency": "KRW", "amount": 5_000, "nonce": bytes(16)}
    return ChallengeRecord(**{**fields, **extra})


@pytest.mark.parametrize("status", list(GrantStatus))
def test_only_an_active_or_unconfirmed_grant_is_usable(status: GrantStatus) -> None:
    """An unconfirmed grant may have been confirmed since the wallet last asked: it is
    offered, and the server declines it if it still waits."""
    held = HeldGrant.received(dataclasses.replace(SAMPLE, valid_until=None))
    held = dataclasses.replace(held, last_known=dataclasses.replace(held.last_known, status=status))
    expected = status in {GrantStatus.ACTIVE, GrantStatus.UNCONFIRMED}
    assert usable(held, challenge(purpose="5812")) is expected


def test_usable_follows_the_grants_rights() -> None:
    held = HeldGrant.received(dataclasses.replace(SAMPLE, valid_until=None))
    assert usable(held, challenge(purpose="5814"))
    assert not usable(held, challenge(purpose="5999"))
    assert not usable(held, challenge(purpose="5812", bill_id="b_other"))
    assert not usable(held, challenge(purpose="5812", currency="USD"))
    lapsed = dataclasses.replace(SAMPLE, valid_until=datetime(2020, 1, 1, tzinfo=UTC))
    assert not usable(HeldGrant.received(lapsed), challenge(purpose="5812"))
    assert capacity(held) == 20_000  # the per-use cap
    spent = dataclasses.replace(
        held, last_known=dataclasses.replace(held.last_known, remaining_amount=7_000)
    )
    assert capacity(spent) == 7_000


@pytest.mark.parametrize("field", ["record", "last_known", "grant_id"])
def test_a_damaged_grant_file_is_reported_by_name(tmp_path: Path, field: str) -> None:
    home = TerminalHome(tmp_path)
    damaged = {**GRANT_FILE, field: {"what": "not this"}}
    home.put("grants", SAMPLE.grant_id, damaged)
    with pytest.raises(ConfigError, match=f"grants/{SAMPLE.grant_id}.json"):
        HeldGrants(home).get(SAMPLE.grant_id)
    with pytest.raises(ConfigError, match="move it aside"):
        list(HeldGrants(home).each())
