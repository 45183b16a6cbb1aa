"""Hypothesis strategies for valid records of every type (shared by round-trip and fuzz)."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from nfcpay.money import CURRENCY_EXPONENTS, MAX_MINOR
from nfcpay.records import (
    AckRecord,
    ChallengeRecord,
    GrantRecord,
    HelloRecord,
    MeansRecord,
    NfcpayRecord,
    PresentedGrant,
    ResultRecord,
    Role,
    SplitRequestRecord,
)

_LOWER = string.ascii_lowercase + string.digits
_ALNUM = string.ascii_letters + string.digits


def ids(prefix: str) -> st.SearchStrategy[str]:
    return st.text(_LOWER, min_size=1, max_size=32).map(lambda body: f"{prefix}_{body}")


tokens = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(_ALNUM),
    st.text(_ALNUM + "_.:-", max_size=31),
)
card_numbers = st.text(string.digits, min_size=12, max_size=19)
texts = st.text(st.characters(exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp")), max_size=200)
currencies = st.sampled_from(sorted(CURRENCY_EXPONENTS))
times = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


def amounts(minimum: int = 1) -> st.SearchStrategy[int]:
    return st.integers(minimum, MAX_MINOR)


def secret(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


def unique(items: st.SearchStrategy[Any], max_size: int = 8) -> st.SearchStrategy[list[Any]]:
    return st.lists(items, max_size=max_size, unique=True)


hellos = st.builds(
    HelloRecord,
    terminal_id=ids("t"),
    role=st.sampled_from(Role),
    key_fingerprint=secret(8),
    nonce=st.none() | st.binary(min_size=8, max_size=32),
)


@st.composite
def grants(draw: st.DrawFn) -> GrantRecord:
    cap = draw(amounts())
    return GrantRecord(
        grant_id=draw(ids("g")),
        virtual_card_number=draw(card_numbers),
        issuing_terminal=draw(ids("t")),
        allowed_terminal=draw(ids("t")),
        usage_auth=draw(secret(32)),
        currency=draw(currencies),
        amount_cap=cap,
        remaining_amount=draw(st.integers(0, cap)),
        max_uses=draw(st.integers(1, 1_000_000)),
        per_use_cap=draw(st.none() | st.integers(1, cap)),
        valid_until=draw(st.none() | times),
        purposes=draw(unique(tokens)),
        regions=draw(unique(tokens)),
        merchants=draw(unique(ids("m"))),
        bill_id=draw(st.none() | ids("b")),
    )


acks = st.one_of(
    st.builds(AckRecord, accepted=st.just(True), ref=st.none() | ids("g"), message=texts),
    st.builds(AckRecord, accepted=st.just(False), code=tokens, message=texts),
)
splits = st.builds(
    SplitRequestRecord,
    bill_id=ids("b"),
    collector_terminal=ids("t"),
    currency=currencies,
    amount=amounts(),
    expires_at=times,
)
fixed_challenges = st.builds(
    ChallengeRecord,
    merchant_id=ids("m"),
    currency=currencies,
    amount=amounts(),
    nonce=st.binary(min_size=16, max_size=32),
    purpose=st.none() | tokens,
    bill_id=st.none() | ids("b"),
)
#: Challenges without an amount: the target enters it, at most the optional maximum.
open_challenges = st.builds(
    ChallengeRecord,
    merchant_id=ids("m"),
    currency=currencies,
    nonce=st.binary(min_size=16, max_size=32),
    purpose=st.none() | tokens,
    max_amount=st.none() | amounts(),
)
challenges = fixed_challenges | open_challenges
presented = st.builds(PresentedGrant, grant_id=ids("g"), amount=amounts(), usage_auth=secret(32))


@st.composite
def means(draw: st.DrawFn) -> MeansRecord:
    shares = draw(st.lists(presented, max_size=8, unique_by=lambda g: g.grant_id))
    own_share = st.tuples(ids("src"), amounts())
    own = draw(st.none() | own_share if shares else own_share)
    return MeansRecord(
        presenting_terminal=draw(ids("t")),
        currency=draw(currencies),
        grants=shares,
        own_source_id=own[0] if own else None,
        own_amount=own[1] if own else 0,
        signature=draw(secret(64)),
    )


results = st.one_of(
    st.builds(
        ResultRecord,
        approved=st.just(True),
        currency=currencies,
        amount=amounts(0),
        payment_id=ids("p"),
        approval_code=tokens,
        message=texts,
    ),
    st.builds(
        ResultRecord,
        approved=st.just(False),
        currency=currencies,
        amount=amounts(0),
        decline_code=tokens,
        message=texts,
    ),
)

#: Short type name → strategy; one entry per record class.
RECORDS: dict[str, st.SearchStrategy[NfcpayRecord]] = {
    "hello": hellos,
    "grant": grants(),
    "ack": acks,
    "split": splits,
    "challenge": challenges,
    "means": means(),
    "result": results,
}
any_record = st.one_of(*RECORDS.values())
