"""The pure rules of authorization, one at a time: a request and rows in, failures out.

No server and no database: each rule gets an :class:`Attempt` and hand-made rows. What the
rules do together with real reads, locks and writes is ``test_authorization.py``'s (in
process) and ``acceptance/test_declines.py``'s (a server process).
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nfcpay import crypto
from nfcpay.declines import DeclineCode
from nfcpay.server.runtime import TerminalKey
from nfcpay.server.schemas import GrantShareIn, MeansIn, PaymentIn
from nfcpay.server.services import rules
from nfcpay.server.services.rules import Attempt, Failure, Share
from nfcpay.testing.server import signed_means

NOW = 1_750_000_000_000_000  # 2025-06-15, in microseconds
HOUR = 3_600_000_000
PRESENTER, OWNER, GRANT, SOURCE = "t_target", "t_owner", "g_grant", "src_card"
MERCHANT = {"merchant_id": "m_shop", "region": "KR-11"}
#: An allowance of 10,000 KRW a day in Seoul, where NOW is Mon 16 Jun 00:06:40, 400 s into
#: the day that began at TODAY.
DAILY = {"allowance_period": "day", "allowance_amount": 10_000, "allowance_zone": "Asia/Seoul"}
TODAY = NOW - 400_000_000
#: The merchant's registered categories, primary first (the default purpose is 5812).
CATEGORIES = ("5812", "5411", "7995")
CIPHER = crypto.FieldCipher(bytes(32))
AUTH_CODE = bytes(range(32))
CHALLENGE = bytes(16)
KEY = crypto.generate_terminal_key()


def attempt(amount: int = 1_000, *, signed_by: Any = KEY, **request: Any) -> Attempt:
    """A payment request for ``amount``: one share of :data:`GRANT` for the whole amount
    unless ``grants`` says otherwise, its means signed by ``signed_by`` the way a target
    terminal signs them (:func:`~nfcpay.testing.server.signed_means`)."""
    grants = request.pop("grants", [(GRANT, usage_auth(), amount)])
    means = signed_means(
        signed_by,
        presenting_terminal=PRESENTER,
        merchant_id=MERCHANT["merchant_id"],
        challenge=CHALLENGE,
        amount=amount,
        currency=request.get("currency", "KRW"),
        purpose=request.get("purpose") or "5812",
        grants=grants,
        own_source_id=request.pop("own_source_id", None),
        own_amount=request.pop("own_amount", None),
        bill_id=request.get("bill_id"),
        split_mode=request.get("split_mode", "exact"),
    )
    return _request(amount, means, request)


def posted(amount: int = 1_000, **request: Any) -> Attempt:
    """Like :func:`attempt`, but with means as a merchant could post them, shapes no
    terminal's means record holds included (an own amount without a source, a source without
    an amount, no share at all); unsigned, for the rules that never read the signature."""
    grants = request.pop("grants", [(GRANT, usage_auth(), amount)])
    means = MeansIn(
        presenting_terminal=PRESENTER,
        grants=[share(part, grant_id, ua) for grant_id, ua, part in grants],
        own_source_id=request.pop("own_source_id", None),
        own_amount=request.pop("own_amount", None),
        signature="",
    )
    return _request(amount, means, request)


def _request(amount: int, means: Any, request: dict[str, Any]) -> Attempt:
    body = {"amount": amount, "currency": "KRW", "challenge": crypto.b64e(CHALLENGE), **request}
    parsed = PaymentIn.model_validate({**body, "means": means})
    return Attempt(parsed, "m_shop", MERCHANT, NOW, CATEGORIES)


def usage_auth(grant_id: str = GRANT, presenting: str = PRESENTER) -> bytes:
    return crypto.usage_auth(AUTH_CODE, grant_id, OWNER, presenting)


def grant_row(**changes: Any) -> dict[str, Any]:
    """A usable grant of 50,000 KRW, 3 uses, for :data:`PRESENTER` (``changes`` applied)."""
    row = {
        "grant_id": GRANT,
        "source_id": SOURCE,
        "issuing_terminal": OWNER,
        "currency": "KRW",
        "amount_cap": 50_000,
        "max_uses": 3,
        "per_use_cap": None,
        "valid_from": None,
        "valid_until": None,
        "purposes": None,
        "regions": None,
        "merchants": None,
        "bill_id": None,
        "remaining_amount": 50_000,
        "remaining_uses": 3,
        "status": "active",
        "confirm_by": None,
        "allowance_period": None,
        "allowance_amount": None,
        "allowance_zone": None,
        "interval_start": None,
        "interval_spent": 0,
        "auth_code_enc": CIPHER.encrypt(crypto.b64e(AUTH_CODE), GRANT),
        "allowed": 1,
    }
    return {**row, **changes}


def source_row(**changes: Any) -> dict[str, Any]:
    """An active card with 100,000 KRW of limit, 40,000 of it used (``changes`` applied)."""
    row = {
        "source_id": SOURCE,
        "owner_terminal": OWNER,
        "kind": "card",
        "currency": "KRW",
        "status": "active",
        "card_masked": "411111******1111",
        "expiry": "12/39",
        "credit_limit": 100_000,
        "outstanding": 40_000,
        "balance": None,
    }
    return {**row, **changes}


def share(amount: int = 1_000, grant_id: str = GRANT, ua: bytes | None = None) -> GrantShareIn:
    ua = usage_auth(grant_id) if ua is None else ua
    return GrantShareIn(grant_id=grant_id, usage_auth=crypto.b64e(ua), amount=amount)


def code_of(failure: Failure | None) -> DeclineCode | None:
    return None if failure is None else failure.code


# --- split ------------------------------------------------------------------------------------

SPLITS: list[tuple[dict[str, Any], int, str | None]] = [
    # (request, own amount, message or None)
    ({}, 0, None),
    (
        {"grants": [(GRANT, b"u", 750)]},
        0,
        "the shares add up to 750 KRW, 250 KRW short of the amount 1,000 KRW",
    ),
    (
        {"grants": [(GRANT, b"u", 1_200)]},
        0,
        "the shares add up to 1,200 KRW, 200 KRW more than the amount 1,000 KRW",
    ),
    ({"grants": [(GRANT, b"u", 600)], "own_amount": 400, "own_source_id": SOURCE}, 400, None),
    (
        {"grants": [(GRANT, b"u", 600)], "own_amount": 400},
        400,
        "400 KRW is left for the presenting terminal's own source, but the means name none",
    ),
    (
        {"grants": [(GRANT, b"u", 600)], "split_mode": "remainder", "own_source_id": SOURCE},
        400,
        None,
    ),
    (
        {"grants": [(GRANT, b"u", 1_300)], "split_mode": "remainder"},
        -300,
        "the grant shares exceed the amount 1,000 KRW by 300 KRW",
    ),
    (
        {"grants": [(GRANT, b"u", 600)], "split_mode": "remainder", "own_amount": 300},
        400,
        "own_amount 300 KRW is not the remainder 400 KRW",
    ),
    (
        {"grants": [(GRANT, b"u", 600)], "split_mode": "remainder"},
        400,
        "400 KRW is left for the presenting terminal's own source, but the means name none",
    ),
]


@pytest.mark.parametrize(("request_", "own", "message"), SPLITS)
def test_split_rule(request_: dict[str, Any], own: int, message: str | None) -> None:
    got_own, failure = rules.split_rule(posted(1_000, **request_))
    assert got_own == own
    if message is None:
        assert failure is None
    else:
        assert failure == Failure(DeclineCode.SHARES_DO_NOT_ADD_UP, message)


@given(
    amount=st.integers(1, 100_000),
    shares=st.lists(st.integers(1, 50_000), max_size=3),
    own=st.integers(0, 100_000),
)
def test_exact_split_fits_exactly_when_the_shares_add_up(
    amount: int, shares: list[int], own: int
) -> None:
    grants = [(f"g_{i:03}", b"u", part) for i, part in enumerate(shares)]
    request = posted(amount, grants=grants, own_amount=own, own_source_id=SOURCE)
    got_own, failure = rules.split_rule(request)
    assert got_own == own
    assert (failure is None) == (sum(shares) + own == amount)


@given(amount=st.integers(1, 100_000), shares=st.lists(st.integers(1, 50_000), max_size=3))
def test_remainder_split_leaves_the_rest_to_the_own_source(amount: int, shares: list[int]) -> None:
    grants = [(f"g_{i:03}", b"u", part) for i, part in enumerate(shares)]
    request = posted(amount, grants=grants, split_mode="remainder", own_source_id=SOURCE)
    own, failure = rules.split_rule(request)
    assert own == amount - sum(shares)
    assert (failure is None) == (own >= 0)


# --- purpose, bill, signature, challenge ------------------------------------------------------


@pytest.mark.parametrize(
    ("purpose", "categories", "code"),
    [
        (None, ("5812",), None),
        (None, ("5999", "5812"), None),
        ("5812", ("5999", "5812"), None),
        # The attack: a 5999 merchant claims 5812 to reach grants limited to restaurants.
        ("5812", ("5999",), DeclineCode.PURPOSE_NOT_REGISTERED),
        ("5812 ", ("5812",), DeclineCode.PURPOSE_NOT_REGISTERED),
    ],
)
def test_purpose_rule(purpose: str | None, categories: tuple[str, ...], code: Any) -> None:
    request = replace(posted(purpose=purpose), categories=categories)
    failure = rules.purpose_rule(request)
    assert code_of(failure) == code
    if failure is not None:
        assert failure.message == (
            f"merchant m_shop is registered for {', '.join(categories)}, not for purpose {purpose}"
        )
        assert failure.grant_id is None and failure.source_id is None


def test_the_purpose_is_the_requests_else_the_primary_category() -> None:
    assert posted().purpose == "5812"
    assert replace(posted(), categories=("5999", "5812")).purpose == "5999"
    assert posted(purpose="7995").purpose == "7995"


def bill_row(**fields: Any) -> dict[str, Any]:
    """A bill as the bills table holds it: opened by :data:`PRESENTER`, 1,000 KRW, unpaid."""
    row = {"bill_id": "b_dinner", "collector_terminal": PRESENTER, "currency": "KRW"}
    return {**row, "total": 1_000, "mode": "exact", "status": "open", "payment_id": None, **fields}


@pytest.mark.parametrize(
    ("bill", "code"),
    [
        (bill_row(), None),
        (bill_row(status="paid", payment_id="p_earlier"), None),
        (None, DeclineCode.BILL_NOT_YOURS),
        (bill_row(collector_terminal="t_someone_else"), DeclineCode.BILL_NOT_YOURS),
        (
            bill_row(collector_terminal="t_someone_else", status="paid", payment_id="p_x"),
            DeclineCode.BILL_NOT_YOURS,
        ),
    ],
)
def test_bill_owner_rule(bill: dict[str, Any] | None, code: DeclineCode | None) -> None:
    """Someone else's bill is declined alike whether it exists, is paid or not."""
    failure = rules.bill_owner_rule(posted(1_000, bill_id="b_dinner"), bill)
    assert code_of(failure) == code
    if failure is not None:
        assert failure.message.startswith(
            "bill b_dinner was not opened by the presenting terminal t_target: "
        )
        assert "upgrade nfcpay" in failure.message


@pytest.mark.parametrize(
    ("paid_by", "grants", "code"),
    [
        (None, True, None),
        ("p_earlier", True, DeclineCode.BILL_ALREADY_PAID),
        ("p_earlier", False, DeclineCode.BILL_ALREADY_PAID),
        (None, False, DeclineCode.BILL_MISMATCH),
    ],
)
def test_bill_rule(paid_by: str | None, grants: bool, code: DeclineCode | None) -> None:
    request = posted(1_000, bill_id="b_dinner", **({} if grants else {"grants": []}))
    bill = bill_row(status="open" if paid_by is None else "paid", payment_id=paid_by)
    failure = rules.bill_rule(request, bill)
    assert code_of(failure) == code
    if code is DeclineCode.BILL_ALREADY_PAID:
        assert failure is not None
        assert failure.message == "bill b_dinner was already paid by payment p_earlier"


@pytest.mark.parametrize(
    ("amount", "request_fields", "bill", "wrong"),
    [
        (1_000, {}, {}, None),
        (999, {}, {}, "the payment is 999 KRW, the bill's total 1,000 KRW"),
        (1_000, {"currency": "USD"}, {}, "the payment is in USD, the bill in KRW"),
        (
            1_000,
            {"split_mode": "remainder"},
            {},
            "the payment splits in remainder mode, the bill in exact",
        ),
        (
            1_000,
            {},
            {"mode": "remainder"},
            "the payment splits in exact mode, the bill in remainder",
        ),
        # Remainder mode: the collector's own share takes up whatever the merchant charges.
        (1_500, {"split_mode": "remainder"}, {"mode": "remainder"}, None),
    ],
)
def test_bill_terms_rule(
    amount: int, request_fields: dict[str, Any], bill: dict[str, Any], wrong: str | None
) -> None:
    request = posted(amount, bill_id="b_dinner", **request_fields)
    failure = rules.bill_terms_rule(request, bill_row(**bill))
    if wrong is None:
        assert failure is None
    else:
        assert failure is not None and failure.code is DeclineCode.BILL_TERMS_MISMATCH
        assert failure.message == f"bill b_dinner is not paid as it was opened: {wrong}"


def _tampered(request: Attempt) -> Attempt:
    return replace(request, body=request.body.model_copy(update={"amount": 999}))


def _claimed(request: Attempt) -> Attempt:
    """The merchant names another of its categories than the target signed."""
    return replace(request, body=request.body.model_copy(update={"purpose": "5411"}))


def _unclaimed(request: Attempt) -> Attempt:
    """The merchant drops the purpose the target signed (the primary one applies)."""
    return replace(request, body=request.body.model_copy(update={"purpose": None}))


@pytest.mark.parametrize(
    ("case", "make", "key", "code"),
    [
        ("signed", attempt, KEY, None),
        ("no key registered", attempt, None, DeclineCode.BAD_SIGNATURE),
        ("another key signed", lambda: attempt(signed_by=crypto.generate_terminal_key()), KEY,
         DeclineCode.BAD_SIGNATURE),
        ("amount changed after signing", lambda: _tampered(attempt()), KEY,
         DeclineCode.BAD_SIGNATURE),
        ("another merchant", lambda: replace(attempt(), merchant_id="m_other"), KEY,
         DeclineCode.BAD_SIGNATURE),
        ("signed for the primary category, sent for another", lambda: _claimed(attempt()), KEY,
         DeclineCode.BAD_SIGNATURE),
        ("signed for another category, sent for none", lambda: _unclaimed(attempt(purpose="7995")),
         KEY, DeclineCode.BAD_SIGNATURE),
        ("signed and sent for another category", lambda: attempt(purpose="7995"), KEY, None),
    ],
)  # fmt: skip
def test_signature_rule(case: str, make: Any, key: Any, code: DeclineCode | None) -> None:
    registered = (
        None
        if key is None
        else TerminalKey(KEY.public_key().public_bytes_raw(), "target", None, "Bob")
    )
    assert code_of(rules.signature_rule(make(), registered)) == code


def test_signature_rule_refuses_a_signature_that_is_not_base64() -> None:
    request = attempt()
    means = request.body.means.model_copy(update={"signature": "not base64!"})
    request = replace(request, body=request.body.model_copy(update={"means": means}))
    registered = TerminalKey(KEY.public_key().public_bytes_raw(), "target", None, "Bob")
    assert code_of(rules.signature_rule(request, registered)) is DeclineCode.BAD_SIGNATURE


@pytest.mark.parametrize(("used", "code"), [(False, None), (True, DeclineCode.CHALLENGE_REUSED)])
def test_challenge_rule(used: bool, code: DeclineCode | None) -> None:
    assert code_of(rules.challenge_rule(used)) == code


# --- one grant share --------------------------------------------------------------------------

#: (what is wrong, grant row changes, share amount, request changes, code, message)
GRANTS: list[tuple[str, dict[str, Any], int, dict[str, Any], DeclineCode | None, str]] = [
    ("nothing", {}, 1_000, {}, None, ""),
    ("bound to another bill", {"bill_id": "b_x"}, 1_000, {"bill_id": "b_y"},
     DeclineCode.BILL_MISMATCH, "grant g_grant pays only bill b_x"),
    ("bound to a bill, paid outside it", {"bill_id": "b_x"}, 1_000, {},
     DeclineCode.BILL_MISMATCH, "grant g_grant pays only bill b_x"),
    ("bound to this bill", {"bill_id": "b_x"}, 1_000, {"bill_id": "b_x"}, None, ""),
    ("locked", {"status": "locked"}, 1_000, {}, DeclineCode.GRANT_LOCKED,
     "grant g_grant is locked"),
    ("revoked", {"status": "revoked"}, 1_000, {}, DeclineCode.GRANT_REVOKED,
     "grant g_grant was revoked by its owner"),
    ("unconfirmed", {"confirm_by": NOW + 1}, 1_000, {}, DeclineCode.GRANT_NOT_CONFIRMED,
     "grant g_grant waits for its owner to confirm the terminal that tapped "
     "(until 2025-06-15T15:06:40.000Z)"),
    ("unconfirmed past its window", {"confirm_by": NOW}, 1_000, {}, DeclineCode.GRANT_REVOKED,
     "grant g_grant is withdrawn: its owner did not confirm the terminal that tapped by "
     "2025-06-15T15:06:40.000Z"),
    ("revoked before confirming", {"status": "revoked", "confirm_by": NOW + 1}, 1_000, {},
     DeclineCode.GRANT_REVOKED, "grant g_grant was revoked by its owner"),
    ("unconfirmed and used up", {"confirm_by": NOW + 1, "remaining_uses": 0}, 1_000, {},
     DeclineCode.GRANT_NOT_CONFIRMED, "grant g_grant waits for its owner to confirm the "
     "terminal that tapped (until 2025-06-15T15:06:40.000Z)"),
    ("not yet valid", {"valid_from": NOW + 1}, 1_000, {}, DeclineCode.GRANT_NOT_YET_VALID,
     "grant g_grant is valid from 2025-06-15T15:06:40.000Z"),
    ("valid from now", {"valid_from": NOW}, 1_000, {}, None, ""),
    ("expired this instant", {"valid_until": NOW}, 1_000, {}, DeclineCode.GRANT_EXPIRED,
     "grant g_grant expired at 2025-06-15T15:06:40.000Z"),
    ("valid a moment longer", {"valid_until": NOW + 1}, 1_000, {}, None, ""),
    ("in another currency", {"currency": "USD"}, 1_000, {}, DeclineCode.CURRENCY_MISMATCH,
     "grant g_grant is in USD, the payment is not"),
    ("used up", {"remaining_uses": 0}, 1_000, {}, DeclineCode.NO_USES_LEFT,
     "grant g_grant has no uses left"),
    ("over its per-use cap", {"per_use_cap": 999}, 1_000, {}, DeclineCode.OVER_PER_USE_CAP,
     "1,000 KRW is over grant g_grant's per-use cap 999 KRW"),
    ("over what it has left", {"remaining_amount": 999}, 1_000, {},
     DeclineCode.OVER_REMAINING_CAP, "1,000 KRW is over grant g_grant's remaining 999 KRW"),
    ("within today's allowance", {**DAILY, "interval_start": TODAY, "interval_spent": 9_000},
     1_000, {}, None, ""),
    ("over today's allowance", {**DAILY, "interval_start": TODAY, "interval_spent": 9_001},
     1_000, {}, DeclineCode.ALLOWANCE_EXCEEDED, "1,000 KRW is over grant g_grant's allowance: "
     "999 KRW of 10,000 KRW is left today; it renews Tue 17 Jun 00:00 Asia/Seoul"),
    ("over a whole day's allowance", DAILY, 10_001, {}, DeclineCode.ALLOWANCE_EXCEEDED,
     "10,001 KRW is over grant g_grant's allowance: 10,000 KRW of 10,000 KRW is left today; "
     "it renews Tue 17 Jun 00:00 Asia/Seoul"),
    ("allowance spent yesterday",
     {**DAILY, "interval_start": TODAY - 24 * HOUR, "interval_spent": 10_000}, 10_000, {}, None,
     ""),
    ("over this week's allowance",
     {**DAILY, "allowance_period": "week", "allowance_zone": "Europe/Berlin"}, 10_001, {},
     DeclineCode.ALLOWANCE_EXCEEDED, "10,001 KRW is over grant g_grant's allowance: 10,000 KRW "
     "of 10,000 KRW is left this week; it renews Mon 16 Jun 00:00 Europe/Berlin"),
    ("another purpose", {"purposes": '["5411"]'}, 1_000, {}, DeclineCode.PURPOSE_NOT_ALLOWED,
     "grant g_grant does not allow purpose 5812"),
    ("purpose overridden", {"purposes": '["5411"]'}, 1_000, {"purpose": "5411"}, None, ""),
    ("overridden to another", {"purposes": '["5812"]'}, 1_000, {"purpose": "7995"},
     DeclineCode.PURPOSE_NOT_ALLOWED, "grant g_grant does not allow purpose 7995"),
    ("another region", {"regions": '["US-CA"]'}, 1_000, {}, DeclineCode.REGION_NOT_ALLOWED,
     "grant g_grant does not allow region KR-11"),
    ("another merchant", {"merchants": '["m_other"]'}, 1_000, {},
     DeclineCode.MERCHANT_NOT_ALLOWED, "grant g_grant does not allow merchant m_shop"),
    ("this merchant, region, purpose",
     {"merchants": '["m_shop"]', "regions": '["KR-11"]', "purposes": '["5812"]'}, 1_000, {},
     None, ""),
    # The first broken right wins, in the order of the contract.
    ("locked and expired", {"status": "locked", "valid_until": NOW}, 1_000, {},
     DeclineCode.GRANT_LOCKED, "grant g_grant is locked"),
    ("expired and used up", {"valid_until": NOW, "remaining_uses": 0}, 1_000, {},
     DeclineCode.GRANT_EXPIRED, "grant g_grant expired at 2025-06-15T15:06:40.000Z"),
    ("over both caps", {"per_use_cap": 10, "remaining_amount": 10}, 1_000, {},
     DeclineCode.OVER_PER_USE_CAP, "1,000 KRW is over grant g_grant's per-use cap 10 KRW"),
    ("used up, another region", {"remaining_uses": 0, "regions": "[]"}, 1_000, {},
     DeclineCode.NO_USES_LEFT, "grant g_grant has no uses left"),
    ("over the cap and the allowance", {**DAILY, "remaining_amount": 10}, 10_001, {},
     DeclineCode.OVER_REMAINING_CAP, "10,001 KRW is over grant g_grant's remaining 10 KRW"),
    ("over the allowance, another region", {**DAILY, "regions": "[]"}, 10_001, {},
     DeclineCode.ALLOWANCE_EXCEEDED, "10,001 KRW is over grant g_grant's allowance: 10,000 KRW "
     "of 10,000 KRW is left today; it renews Tue 17 Jun 00:00 Asia/Seoul"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("wrong", "changes", "amount", "request_", "code", "message"),
    GRANTS,
    ids=[g[0] for g in GRANTS],
)
def test_rights_rule(
    wrong: str,
    changes: dict[str, Any],
    amount: int,
    request_: dict[str, Any],
    code: DeclineCode | None,
    message: str,
) -> None:
    failure = rules.rights_rule(attempt(amount, **request_), share(amount), grant_row(**changes))
    if code is None:
        assert failure is None
    else:
        assert failure == Failure(code, message, GRANT)


@given(
    cap=st.integers(1, 100_000),
    left=st.integers(0, 100_000),
    delta=st.integers(-2, 2),
    per_use=st.booleans(),
)
def test_amounts_around_the_caps(cap: int, left: int, delta: int, per_use: bool) -> None:
    """Exactly the cap passes, one minor unit over does not: per-use cap first, then what the
    grant has left."""
    amount = max(1, (cap if per_use else left) + delta)
    row = grant_row(per_use_cap=cap if per_use else None, remaining_amount=left)
    failure = rules.rights_rule(attempt(amount), share(amount), row)
    if per_use and amount > cap:
        expected: DeclineCode | None = DeclineCode.OVER_PER_USE_CAP
    elif amount > left:
        expected = DeclineCode.OVER_REMAINING_CAP
    else:
        expected = None
    assert code_of(failure) == expected


@given(spent=st.integers(0, 10_000), delta=st.integers(-2, 2), earlier=st.booleans())
def test_amounts_around_the_allowance(spent: int, delta: int, earlier: bool) -> None:
    """What is left of today's allowance passes, one minor unit more does not; what an
    earlier day spent counts for nothing."""
    start = TODAY - 24 * HOUR if earlier else TODAY
    left = 10_000 if earlier else 10_000 - spent
    amount = max(1, left + delta)
    row = grant_row(**DAILY, interval_start=start, interval_spent=spent)
    failure = rules.rights_rule(attempt(amount), share(amount), row)
    expected = DeclineCode.ALLOWANCE_EXCEEDED if amount > left else None
    assert code_of(failure) == expected


@given(valid_from=st.integers(-3, 3), valid_until=st.integers(-3, 3))
def test_validity_window_is_from_inclusive_until_exclusive(
    valid_from: int, valid_until: int
) -> None:
    row = grant_row(valid_from=NOW + valid_from, valid_until=NOW + valid_until)
    failure = rules.rights_rule(attempt(), share(), row)
    if valid_from > 0:
        assert code_of(failure) is DeclineCode.GRANT_NOT_YET_VALID
    elif valid_until <= 0:
        assert code_of(failure) is DeclineCode.GRANT_EXPIRED
    else:
        assert failure is None


@pytest.mark.parametrize(
    ("wrong", "row", "presented", "code", "message"),
    [
        ("nothing", grant_row(), usage_auth(), None, ""),
        ("no such grant", None, usage_auth(), DeclineCode.UNKNOWN_GRANT,
         "no grant g_grant is known"),
        ("terminal not allowed", grant_row(allowed=0), usage_auth(),
         DeclineCode.TERMINAL_NOT_ALLOWED, "terminal t_target may not use grant g_grant"),
        ("made-up usage-auth", grant_row(), secrets.token_bytes(32),
         DeclineCode.USAGE_AUTH_MISMATCH, "the usage-auth for grant g_grant is not genuine"),
        ("usage-auth for another terminal", grant_row(), usage_auth(presenting="t_other"),
         DeclineCode.USAGE_AUTH_MISMATCH, "the usage-auth for grant g_grant is not genuine"),
        # The terminal is checked before the usage-auth, the usage-auth before the rights.
        ("not allowed, wrong usage-auth", grant_row(allowed=0), b"x",
         DeclineCode.TERMINAL_NOT_ALLOWED, "terminal t_target may not use grant g_grant"),
        ("wrong usage-auth, revoked", grant_row(status="revoked"), b"x",
         DeclineCode.USAGE_AUTH_MISMATCH, "the usage-auth for grant g_grant is not genuine"),
        ("revoked", grant_row(status="revoked"), usage_auth(), DeclineCode.GRANT_REVOKED,
         "grant g_grant was revoked by its owner"),
    ],
)  # fmt: skip
def test_grant_rule(
    wrong: str, row: Any, presented: bytes, code: DeclineCode | None, message: str
) -> None:
    failure = rules.grant_rule(attempt(), share(ua=presented), row, CIPHER)
    assert failure == (None if code is None else Failure(code, message, GRANT))


def test_a_usage_auth_that_is_not_base64_is_not_genuine() -> None:
    odd = GrantShareIn(grant_id=GRANT, usage_auth="not base64!", amount=1_000)
    assert not rules.usage_auth_genuine(attempt(), odd, grant_row(), CIPHER)
    assert rules.usage_auth_genuine(attempt(), share(), grant_row(), CIPHER)


@pytest.mark.parametrize(
    ("bills", "code"),
    [
        ([None], DeclineCode.BILL_MISMATCH),
        (["b_other"], DeclineCode.BILL_MISMATCH),
        ([None, "b_dinner"], None),
        (["b_dinner"], None),
    ],
)
def test_bill_members_rule(bills: list[str | None], code: DeclineCode | None) -> None:
    rows = [grant_row(grant_id=f"g_{i}", bill_id=bill) for i, bill in enumerate(bills)]
    assert code_of(rules.bill_members_rule(attempt(bill_id="b_dinner"), rows)) == code
    assert rules.bill_members_rule(attempt(), rows) is None  # no bill named: nothing to check


# --- the presenting terminal's own source and the funding sources ----------------------------


@pytest.mark.parametrize(
    ("owner", "code"),
    [
        (PRESENTER, None),
        ("t_someone_else", DeclineCode.UNKNOWN_SOURCE),
        (None, DeclineCode.UNKNOWN_SOURCE),
    ],
)
def test_own_source_rule(owner: str | None, code: DeclineCode | None) -> None:
    failure = rules.own_source_rule(posted(own_source_id="src_mine", own_amount=0), owner)
    if code is None:
        assert failure is None
    else:
        message = "the presenting terminal has no funding source src_mine"
        assert failure == Failure(code, message, source_id="src_mine")


SOURCES: list[tuple[str, dict[str, Any], int, DeclineCode | None, str]] = [
    ("enough limit", {}, 60_000, None, ""),
    ("dormant", {"status": "dormant"}, 1, DeclineCode.SOURCE_NOT_ACTIVE,
     "the funding source behind this share is dormant"),
    ("closed", {"status": "closed"}, 1, DeclineCode.SOURCE_NOT_ACTIVE,
     "the funding source behind this share is closed"),
    ("card expired", {"expiry": "05/25"}, 1, DeclineCode.SOURCE_NOT_ACTIVE,
     "the funding source behind this share is expired"),
    ("card valid this month", {"expiry": "06/25"}, 1, None, ""),
    ("in another currency", {"currency": "USD"}, 1, DeclineCode.CURRENCY_MISMATCH,
     "the funding source is in USD"),
    ("card limit short", {}, 60_001, DeclineCode.LIMIT_EXCEEDED,
     "the card limit does not cover 60,001 KRW"),
    ("wallet short", {"kind": "wallet", "expiry": None, "balance": 500}, 501,
     DeclineCode.INSUFFICIENT_BALANCE, "the wallet balance does not cover 501 KRW"),
    ("bank short", {"kind": "bank", "expiry": None, "balance": 0}, 1,
     DeclineCode.INSUFFICIENT_BALANCE, "the bank balance does not cover 1 KRW"),
    ("wallet enough", {"kind": "wallet", "expiry": None, "balance": 500}, 500, None, ""),
    ("closed and short", {"status": "closed", "outstanding": 100_000}, 1,
     DeclineCode.SOURCE_NOT_ACTIVE, "the funding source behind this share is closed"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("wrong", "changes", "total", "code", "message"), SOURCES, ids=[s[0] for s in SOURCES]
)
def test_source_rule(
    wrong: str, changes: dict[str, Any], total: int, code: DeclineCode | None, message: str
) -> None:
    failure = rules.source_rule(attempt(), source_row(**changes), total)
    assert failure == (None if code is None else Failure(code, message))


@given(
    kind=st.sampled_from(["card", "wallet", "bank"]),
    room=st.integers(0, 1_000_000),
    delta=st.integers(-2, 2),
)
def test_a_source_bears_exactly_what_it_has(kind: str, room: int, delta: int) -> None:
    total = max(1, room + delta)
    if kind == "card":
        source = source_row(credit_limit=room + 7, outstanding=7)
    else:
        source = source_row(kind=kind, expiry=None, balance=room)
    failure = rules.source_rule(attempt(), source, total)
    short = DeclineCode.LIMIT_EXCEEDED if kind == "card" else DeclineCode.INSUFFICIENT_BALANCE
    assert code_of(failure) == (short if total > room else None)


def test_backed_shares_rule_names_each_share_of_the_source() -> None:
    shares = [
        Share("g_a", SOURCE, 300),
        Share("g_b", "src_other", 200),
        Share("g_c", SOURCE, 100),
        Share(None, SOURCE, 400),
    ]
    failure = Failure(DeclineCode.LIMIT_EXCEEDED, "the card limit does not cover 800 KRW")
    assert rules.backed_shares_rule(failure, shares, SOURCE) == [
        Failure(
            DeclineCode.LIMIT_EXCEEDED, "grant g_a: the card limit does not cover 800 KRW", "g_a"
        ),
        Failure(
            DeclineCode.LIMIT_EXCEEDED, "grant g_c: the card limit does not cover 800 KRW", "g_c"
        ),
        Failure(
            DeclineCode.LIMIT_EXCEEDED,
            "own share: the card limit does not cover 800 KRW",
            source_id=SOURCE,
        ),
    ]
    assert rules.backed_shares_rule(failure, shares, "src_none") == []


@pytest.mark.parametrize(
    ("source", "what"),
    [(source_row(), "card limit"), (source_row(kind="wallet"), "wallet balance"),
     (source_row(kind="bank"), "bank balance")],
)  # fmt: skip
def test_shortfall_names_what_runs_short(source: dict[str, Any], what: str) -> None:
    assert rules.shortfall(source) == what
