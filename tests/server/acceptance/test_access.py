"""Issue 2, acceptance 6: unauthenticated, wrongly signed, stale, replayed and other-terminal
requests are refused (401 / 403 / 404) and change nothing.

The world: owners A and B, each with a card and a grant for target T; merchants M1 and M2;
an approved payment taken by M1. Every case snapshots the database, sends ONE hand-built
request to the real server process, checks the status and error code, and proves no row of
money, grants, payments, refunds, idempotency, terminals or notifications changed.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from nfcpay import crypto
from nfcpay.testing.server import PaymentScene, Terminal
from tests.support.harness import Harness, changed_tables
from tests.support.signing import sign


@dataclass
class World:
    a: PaymentScene  # owner A, target T, merchant M1; A's grant paid once
    b_owner: Terminal
    b_source: dict[str, Any]
    b_grant: str
    m2: Terminal
    payment_id: str
    b_notification: str
    #: The merchant's challenge the paid means answered (base64url).
    challenge: str
    bill_id: str  # a bill T collects, with a share of A's grant
    delivery_id: str  # A's grant, sent through the server to T and not fetched yet

    @property
    def target(self) -> Terminal:
        return self.a.target


@pytest.fixture(scope="module")
def world(harness: Harness) -> World:
    a = harness.scene(max_uses=5)
    challenge = secrets.token_bytes(16)
    paid = a.pay(1_000, challenge=challenge)
    assert paid["status"] == "approved"
    b = harness.terminal("user")
    b_source = b.client.add_card("5500005555555559", "12/39", 10_000, "KRW")
    b_grant = b.client.issue_grant(
        b_source["source_id"], [a.target.terminal_id], amount_cap=500, currency="KRW"
    )["grant"]["grant_id"]
    b.client.revoke_grant(b.client.issue_grant(
        b_source["source_id"], [a.target.terminal_id], amount_cap=1, currency="KRW"
    )["grant"]["grant_id"])  # fmt: skip
    (note,) = b.client.notifications()
    bill_id = a.target.client.open_bill(total=1_000, currency="KRW")["bill_id"]
    a.owner.client.issue_grant(
        a.source["source_id"],
        [a.target.terminal_id],
        amount_cap=500,
        currency="KRW",
        bill_id=bill_id,
    )
    delivery = a.owner.client.send_grant(a.grant_id, a.target.terminal_id, a.handoff())
    return World(
        a, b, b_source, b_grant, harness.terminal("merchant"), paid["payment_id"],
        note["notification_id"], crypto.b64e(challenge), bill_id, delivery["delivery_id"],
    )  # fmt: skip


@dataclass(frozen=True)
class Call:
    """One HTTP request, built from the world."""

    method: str
    path: str
    body: bytes
    headers: dict[str, str]


def _payment_body(w: World, *, by: Terminal | None = None) -> bytes:
    return _payment_body_for(w.a, merchant=by)


def _signed_call(
    who: Callable[[World], Terminal], method: str, path: Callable[[World], str], body: Any = None
) -> Callable[[World], Call]:
    """A correctly signed call by ``who``: refusals here come from ownership, not auth."""

    def build(w: World) -> Call:
        raw = body(w) if callable(body) else (b"" if body is None else json.dumps(body).encode())
        p = path(w)
        headers = sign(who(w), method, p, raw)
        headers["Idempotency-Key"] = f"k-{secrets.token_hex(8)}"
        return Call(method, p, raw, headers)

    return build


def _pay_as(tamper: Callable[[World, str, bytes], dict[str, str]]) -> Callable[[World], Call]:
    """M1's payment request with headers from ``tamper`` (auth cases)."""

    def build(w: World) -> Call:
        body = _payment_body(w)
        headers = tamper(w, "/v1/payments", body)
        headers["Idempotency-Key"] = f"k-{secrets.token_hex(8)}"
        return Call("POST", "/v1/payments", body, headers)

    return build


def _revoke_as(tamper: Callable[[World, str, bytes], dict[str, str]]) -> Callable[[World], Call]:
    """A's revocation of its grant with headers from ``tamper`` (auth cases)."""

    def build(w: World) -> Call:
        path = f"/v1/grants/{w.a.grant_id}/revoke"
        return Call("POST", path, b"{}", tamper(w, path, b"{}"))

    return build


def _by_m1(**tweaks: Any) -> Callable[[World, str, bytes], dict[str, str]]:
    return lambda w, path, body: sign(w.a.merchant, "POST", path, body, **tweaks)


def _by_a(**tweaks: Any) -> Callable[[World, str, bytes], dict[str, str]]:
    return lambda w, path, body: sign(w.a.owner, "POST", path, body, **tweaks)


def _without(header: str) -> Callable[[World, str, bytes], dict[str, str]]:
    def tamper(w: World, path: str, body: bytes) -> dict[str, str]:
        headers = sign(w.a.merchant, "POST", path, body)
        del headers[header]
        return headers

    return tamper


def _bad_header(header: str, value: str) -> Callable[[World, str, bytes], dict[str, str]]:
    def tamper(w: World, path: str, body: bytes) -> dict[str, str]:
        return {**sign(w.a.owner, "POST", path, body), header: value}

    return tamper


def _m1_claims_m2(w: World, path: str, body: bytes) -> dict[str, str]:
    """M1 signs with its own key but names M2 as the caller."""
    return sign(w.a.merchant, "POST", path, body, as_id=w.m2.terminal_id)


AUTH_CASES: dict[str, Callable[[World], Call]] = {
    "pay-no_headers": lambda w: Call("POST", "/v1/payments", _payment_body(w), {}),
    "pay-no_signature": _pay_as(_without("X-Nfcpay-Signature")),
    "pay-no_nonce": _pay_as(_without("X-Nfcpay-Nonce")),
    "pay-no_timestamp": _pay_as(_without("X-Nfcpay-Timestamp")),
    "pay-other_key": _pay_as(_by_m1(key=crypto.generate_terminal_key())),
    "pay-claims_other_terminal": _pay_as(_m1_claims_m2),
    "pay-unknown_terminal": _pay_as(_by_m1(as_id=crypto.new_id("t"))),
    "pay-body_changed": _pay_as(_by_m1(signed_body=b'{"amount": 1}')),
    "pay-stale": _pay_as(_by_m1(skew=-301)),
    "pay-future": _pay_as(_by_m1(skew=301)),
    "revoke-path_changed": _revoke_as(_by_a(signed_path="/v1/grants/g_other/revoke")),
    "revoke-stale": _revoke_as(_by_a(skew=-3_600)),
    "revoke-garbled_signature": _revoke_as(_bad_header("X-Nfcpay-Signature", "%%%")),
    "revoke-short_nonce": _revoke_as(_by_a(nonce="short")),
    "revoke-bad_timestamp": _revoke_as(_bad_header("X-Nfcpay-Timestamp", "yesterday")),
    "register-not_new": lambda w: _registration(w, as_id=w.a.owner.terminal_id),
    "register-other_key": lambda w: _registration(w, key=crypto.generate_terminal_key()),
}


def _registration(w: World, **tweaks: Any) -> Call:
    key = crypto.generate_terminal_key()
    body = json.dumps(
        {"role": "user", "label": "x", "public_key": crypto.b64e(crypto.public_key_bytes(key))}
    ).encode()
    tweaks.setdefault("key", key)
    return Call("POST", "/v1/terminals", body, sign(None, "POST", "/v1/terminals", body, **tweaks))


def _a(w: World) -> Terminal:
    return w.a.owner


def _m1(w: World) -> str:
    return str(w.a.merchant.merchant_id)


OWNERSHIP_CASES: dict[str, tuple[Callable[[World], Call], int, str]] = {
    "read_other_owners_grant": (
        _signed_call(_a, "GET", lambda w: f"/v1/grants/{w.b_grant}"),
        404,
        "grant_not_found",
    ),
    "revoke_other_owners_grant": (
        _signed_call(_a, "POST", lambda w: f"/v1/grants/{w.b_grant}/revoke", {}),
        404,
        "grant_not_found",
    ),
    "target_revokes_grant_it_may_use": (
        _signed_call(lambda w: w.target, "POST", lambda w: f"/v1/grants/{w.a.grant_id}/revoke", {}),
        403,
        "forbidden",
    ),
    "confirm_other_owners_grant": (
        _signed_call(_a, "POST", lambda w: f"/v1/grants/{w.b_grant}/confirm", {}),
        404,
        "grant_not_found",
    ),
    "target_confirms_grant_it_may_use": (
        _signed_call(
            lambda w: w.target, "POST", lambda w: f"/v1/grants/{w.a.grant_id}/confirm", {}
        ),
        403,
        "forbidden",
    ),
    "merchant_reads_grant": (
        _signed_call(lambda w: w.a.merchant, "GET", lambda w: f"/v1/grants/{w.a.grant_id}"),
        404,
        "grant_not_found",
    ),
    "stranger_reads_owners_profile": (
        _signed_call(
            lambda w: w.m2, "GET", lambda w: f"/v1/terminals/{w.a.owner.terminal_id}/profile"
        ),
        404,
        "terminal_not_found",
    ),
    "stranger_reads_merchants_profile": (
        _signed_call(lambda w: w.b_owner, "GET", lambda w: f"/v1/merchants/{_m1(w)}/profile"),
        404,
        "terminal_not_found",
    ),
    "close_other_owners_source": (
        _signed_call(
            _a,
            "PATCH",
            lambda w: f"/v1/funding-sources/{w.b_source['source_id']}",
            {"status": "closed"},
        ),
        404,
        "source_not_found",
    ),
    "grant_on_other_owners_source": (
        _signed_call(
            _a,
            "POST",
            lambda w: "/v1/grants",
            lambda w: json.dumps(
                {
                    "source_id": w.b_source["source_id"],
                    "allowed_terminals": [w.target.terminal_id],
                    "currency": "KRW",
                    "rights": {"amount_cap": 100},
                }
            ).encode(),
        ),
        404,
        "source_not_found",
    ),
    "merchant_refunds_other_merchants_payment": (
        _signed_call(lambda w: w.m2, "POST", lambda w: f"/v1/payments/{w.payment_id}/refunds", {}),
        404,
        "payment_not_found",
    ),
    "merchant_reads_other_merchants_payment": (
        _signed_call(lambda w: w.m2, "GET", lambda w: f"/v1/payments/{w.payment_id}"),
        404,
        "payment_not_found",
    ),
    "owner_reads_presentation_paid_with_its_grant": (
        _signed_call(_a, "GET", lambda w: f"/v1/presentations/{_m1(w)}/{w.challenge}"),
        404,
        "no_payment_yet",
    ),
    "merchant_reads_other_merchants_presentation": (
        _signed_call(lambda w: w.m2, "GET", lambda w: f"/v1/presentations/{_m1(w)}/{w.challenge}"),
        404,
        "no_payment_yet",
    ),
    "owner_refunds_payment": (
        _signed_call(_a, "POST", lambda w: f"/v1/payments/{w.payment_id}/refunds", {}),
        403,
        "forbidden",
    ),
    "user_posts_payment": (
        _signed_call(_a, "POST", lambda w: "/v1/payments", _payment_body),
        403,
        "forbidden",
    ),
    "target_posts_payment": (
        _signed_call(lambda w: w.target, "POST", lambda w: "/v1/payments", _payment_body),
        403,
        "forbidden",
    ),
    "user_lists_payments": (_signed_call(_a, "GET", lambda w: "/v1/payments"), 403, "forbidden"),
    "user_reads_merchant_categories": (
        _signed_call(_a, "GET", lambda w: "/v1/merchants/me/categories"),
        403,
        "forbidden",
    ),
    "target_changes_merchant_categories": (
        _signed_call(
            lambda w: w.target,
            "PUT",
            lambda w: "/v1/merchants/me/categories",
            {"categories": ["1"]},
        ),
        403,
        "forbidden",
    ),
    "member_reads_collectors_bill": (
        _signed_call(_a, "GET", lambda w: f"/v1/bills/{w.bill_id}"),
        404,
        "bill_not_found",
    ),
    "user_opens_bill": (
        _signed_call(_a, "POST", lambda w: "/v1/bills", {"total": 100, "currency": "KRW"}),
        403,
        "forbidden",
    ),
    "merchant_adds_source": (
        _signed_call(
            lambda w: w.m2,
            "POST",
            lambda w: "/v1/funding-sources",
            {"kind": "wallet", "balance": 5, "currency": "KRW"},
        ),
        403,
        "forbidden",
    ),
    "owner_sends_other_owners_grant": (
        _signed_call(
            _a,
            "POST",
            lambda w: "/v1/deliveries",
            lambda w: json.dumps(
                {"grant_id": w.b_grant, "to": w.target.terminal_id, "record": "AAAA"}
            ).encode(),
        ),
        404,
        "grant_not_found",
    ),
    "other_owner_reads_delivery": (
        _signed_call(lambda w: w.b_owner, "GET", lambda w: f"/v1/deliveries/{w.delivery_id}"),
        404,
        "delivery_not_found",
    ),
    "owner_acknowledges_delivery_for_its_target": (
        _signed_call(_a, "POST", lambda w: f"/v1/deliveries/{w.delivery_id}/ack", {}),
        404,
        "delivery_not_found",
    ),
    "merchant_acknowledges_delivery": (
        _signed_call(lambda w: w.m2, "POST", lambda w: f"/v1/deliveries/{w.delivery_id}/ack", {}),
        404,
        "delivery_not_found",
    ),
    "merchant_issues_grant": (
        _signed_call(
            lambda w: w.m2,
            "POST",
            lambda w: "/v1/grants",
            lambda w: json.dumps(
                {
                    "source_id": w.a.source["source_id"],
                    "allowed_terminals": [w.target.terminal_id],
                    "currency": "KRW",
                    "rights": {"amount_cap": 100},
                }
            ).encode(),
        ),
        403,
        "forbidden",
    ),
}


def _send(harness: Harness, call: Call) -> httpx.Response:
    return harness.http.request(
        call.method, harness.url + call.path, content=call.body, headers=call.headers
    )


def _refused(harness: Harness, call: Call, status: int) -> dict[str, Any]:
    before = harness.snapshot()
    response = _send(harness, call)
    assert response.status_code == status, response.text
    assert changed_tables(before, harness.snapshot()) == []
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", sorted(AUTH_CASES))
def test_unauthenticated_request_is_refused(harness: Harness, world: World, name: str) -> None:
    answer = _refused(harness, AUTH_CASES[name](world), 401)
    assert answer["error"] == "authentication_failed"


@pytest.mark.parametrize("name", sorted(OWNERSHIP_CASES))
def test_other_terminals_objects_are_out_of_reach(
    harness: Harness, world: World, name: str
) -> None:
    build, status, code = OWNERSHIP_CASES[name]
    answer = _refused(harness, build(world), status)
    assert answer["error"] == code, answer


@pytest.mark.parametrize("kind", ["payment", "revoke", "confirm", "refund"])
def test_replayed_request_is_refused(harness: Harness, world: World, kind: str) -> None:
    """The same signed request twice: the first works, the copy changes nothing."""
    scene = harness.scene(max_uses=3)
    if kind == "payment":
        path, body, who = "/v1/payments", _payment_body_for(scene), scene.merchant
    elif kind in ("revoke", "confirm"):
        path, body, who = f"/v1/grants/{scene.grant_id}/{kind}", b"{}", scene.owner
    else:
        paid = scene.pay(100)
        path, body, who = f"/v1/payments/{paid['payment_id']}/refunds", b"{}", scene.merchant
    headers = sign(who, "POST", path, body)
    headers["Idempotency-Key"] = f"k-{secrets.token_hex(8)}"
    call = Call("POST", path, body, headers)
    first = _send(harness, call)
    assert first.status_code in (200, 201), first.text
    assert first.json().get("status") in (None, "approved", "revoked", "active"), first.text
    answer = _refused(harness, call, 401)
    assert "replay" in answer["message"]
    # With a fresh idempotency key the copy is still the same nonce: refused all the same.
    fresh = Call("POST", path, body, {**headers, "Idempotency-Key": f"k-{secrets.token_hex(8)}"})
    _refused(harness, fresh, 401)


def _payment_body_for(scene: PaymentScene, *, merchant: Terminal | None = None) -> bytes:
    return json.dumps(scene.payment_body(100, merchant=merchant)).encode()


def test_each_terminal_lists_only_its_own(harness: Harness, world: World) -> None:
    a = world.a.owner.client
    assert {s["source_id"] for s in a.list_sources()} == {world.a.source["source_id"]}
    assert world.b_source["source_id"] not in {s["source_id"] for s in a.list_sources()}
    assert world.b_grant not in {g["grant_id"] for g in a.list_grants()}
    target_view = {g["grant_id"]: g for g in world.target.client.list_grants()}
    assert {world.a.grant_id, world.b_grant} <= set(target_view)
    assert all("source_id" not in g for g in target_view.values())
    assert world.payment_id not in {p["payment_id"] for p in world.m2.client.list_payments()}
    for other in (world.a.owner, world.b_owner, world.m2):
        assert other.client.deliveries() == []
    assert [d["delivery_id"] for d in world.target.client.deliveries()] == [world.delivery_id]
    assert world.b_notification not in {n["notification_id"] for n in a.notifications()}
    # Naming B's notification as a cursor answers exactly as naming one that does not exist.
    answers = []
    for cursor in (world.b_notification, crypto.new_id("n")):
        before = harness.snapshot()
        path = f"/v1/notifications?after={cursor}"
        response = harness.http.get(
            harness.url + path, headers=sign(world.a.owner, "GET", path, b"")
        )
        assert changed_tables(before, harness.snapshot()) == []
        body = response.json()
        answers.append((response.status_code, body["error"], body["message"].replace(cursor, "?")))
    assert answers[0] == answers[1] and answers[0][0] in (404, 422)


#: Operations whose answers list the caller's own objects: test_each_terminal_lists_only_its_own
#: shows another terminal's objects never appear in them.
OWN_LISTS = {
    "GET /v1/terminals/me",
    "GET /v1/funding-sources",
    "GET /v1/grants",
    "GET /v1/payments",
    "GET /v1/notifications",
    "GET /v1/deliveries",
}
#: Answered without a signature (health) or signed by the new key itself (registration,
#: refused in AUTH_CASES when it names an existing terminal or another key).
UNSIGNED = {"GET /v1/health", "POST /v1/terminals"}


def _operations(harness: Harness) -> dict[str, re.Pattern[str]]:
    """Every operation of the real server's OpenAPI document, with a pattern for its path."""
    paths = harness.http.get(harness.url + "/openapi.json").json()["paths"]
    return {
        f"{method.upper()} {path}": re.compile(re.sub(r"\{[^}]+\}", "[^/]+", path) + r"(\?.*)?$")
        for path, item in paths.items()
        for method in item
    }


def _operation_of(operations: dict[str, re.Pattern[str]], call: Call) -> str:
    [name] = [
        op
        for op, pattern in operations.items()
        if op.split()[0] == call.method and pattern.match(call.path)
    ]
    return name


def test_every_operation_is_tried_with_another_terminals_credentials_and_ids(
    harness: Harness, world: World
) -> None:
    """A new endpoint without a boundary case fails here until one is written."""
    operations = _operations(harness)
    tried = {_operation_of(operations, build(world)) for build, _, _ in OWNERSHIP_CASES.values()}
    untried = set(operations) - tried - OWN_LISTS - UNSIGNED
    assert not untried, f"no other-terminal case in OWNERSHIP_CASES for {sorted(untried)}"
    me = world.m2.client.me()
    assert me["terminal_id"] == world.m2.terminal_id and world.a.owner.terminal_id not in str(me)


def test_every_signed_operation_refuses_an_unsigned_request(harness: Harness, world: World) -> None:
    ids = {
        "terminal_id": world.a.owner.terminal_id,
        "grant_id": world.a.grant_id,
        "source_id": world.a.source["source_id"],
        "payment_id": world.payment_id,
        "merchant_id": _m1(world),
        "challenge": world.challenge,
        "bill_id": world.bill_id,
        "delivery_id": world.delivery_id,
    }
    for operation in sorted(set(_operations(harness)) - UNSIGNED):
        method, template = operation.split()
        path = template.format(**ids)
        # A fresh claimed id each time keeps this under the failed-authentication throttle.
        headers = {"Content-Type": "application/json", "X-Nfcpay-Terminal": crypto.new_id("t")}
        answer = _refused(harness, Call(method, path, b"{}", headers), 401)
        assert answer["error"] == "authentication_failed", operation
