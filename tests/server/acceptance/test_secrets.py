"""Issue 2, acceptance 5: no registered card number, auth code or usage-auth value ever leaves
the server, in any response body or in its log.

One scenario walks every endpoint of a real server process (debug logging on), successes and
errors alike, with the secrets placed where a careless server would echo them: in failing
requests, validation errors, unauthenticated calls, replays. Every response body is recorded
by an httpx hook; then bodies, the captured server log and the database files are searched
for each secret in every spelling (raw bytes, base64url, base64, hex).

The one response allowed to carry an auth code is the issuance answer of its own grant.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from nfcpay import crypto
from nfcpay.errors import ApiError
from nfcpay.testing.server import (
    PaymentScene,
    ServerProcess,
    Terminal,
    build_signed_means,
    register_terminal,
)
from tests.support.harness import start_server

CARDS = ("4111111111111111", "5500005555555559", "340000000000009")


@dataclass
class Recorder:
    """Every response the scenario received: (request line, status, body)."""

    seen: list[tuple[str, int, bytes]] = field(default_factory=list)

    def hook(self, response: httpx.Response) -> None:
        response.read()
        line = f"{response.request.method} {response.request.url.raw_path.decode()}"
        self.seen.append((line, response.status_code, response.content))


def spellings(secret: bytes | str) -> set[bytes]:
    """The forms a secret could leak in."""
    if isinstance(secret, str):
        return {secret.encode()}
    return {
        secret,
        crypto.b64e(secret).encode(),
        base64.b64encode(secret),
        base64.b64encode(secret).rstrip(b"="),
        secret.hex().encode(),
        secret.hex().upper().encode(),
    }


@pytest.fixture(scope="module")
def verbose_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("secrets"), env={"NFCPAY_VERBOSE": "2"})
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Scenario:
    url: str
    http: httpx.Client
    cards: list[str] = field(default_factory=list)
    auth_codes: dict[str, bytes] = field(default_factory=dict)  # grant id -> auth code
    usage_auths: list[bytes] = field(default_factory=list)

    def terminal(self, role: str, **kwargs: object) -> Terminal:
        return register_terminal(self.url, role, http=self.http, **kwargs)  # type: ignore[arg-type]

    def issue(self, owner: Terminal, source_id: str, target: Terminal, **rights: object) -> str:
        rights.setdefault("amount_cap", 50_000)
        answer = owner.client.issue_grant(
            source_id,
            [target.terminal_id],
            currency="KRW",
            **rights,  # type: ignore[arg-type]
        )
        grant_id = answer["grant"]["grant_id"]
        self.auth_codes[grant_id] = crypto.b64d(answer["auth_code"])
        return str(grant_id)

    def scene(
        self, owner: Terminal, target: Terminal, shop: Terminal, grant_id: str
    ) -> PaymentScene:
        source = {"source_id": "unused"}
        return PaymentScene(
            owner, target, shop, source, {"grant_id": grant_id}, self.auth_codes[grant_id]
        )

    def pay(self, scene: PaymentScene, amount: int, **kwargs: object) -> dict[str, object]:
        usage_auth = scene.usage_auth()
        self.usage_auths.append(usage_auth)
        return scene.pay(amount, **kwargs)  # type: ignore[arg-type]


def expect_error(status: int, call: object, *args: object, **kwargs: object) -> None:
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.status == status, caught.value


def run_scenario(s: Scenario) -> None:
    raw = s.http
    assert raw.get(f"{s.url}/v1/health").status_code == 200
    assert raw.get(f"{s.url}/openapi.json").status_code == 200
    owner, target, shop, other_shop = (
        s.terminal("user"),
        s.terminal("target"),
        s.terminal("merchant"),
        s.terminal("merchant", merchant={"name": "Other", "category": "5411"}),
    )
    owner.client.me()
    shop.client.me()

    # Funding sources, and refusals that carry a real card number in the request.
    card = owner.client.add_card(CARDS[0], "12/39", 100_000, "KRW")
    card2 = owner.client.add_card(CARDS[1], "01/38", 50_000, "KRW")
    target_card = target.client.add_card(CARDS[2], "06/37", 10_000, "KRW")
    s.cards += CARDS
    wallet = owner.client.add_wallet(20_000, "KRW")
    owner.client.add_bank(5_000, "KRW")
    owner.client.list_sources()
    owner.client.set_source_status(card2["source_id"], "dormant")
    owner.client.set_source_status(card2["source_id"], "active")
    expect_error(403, shop.client.add_card, CARDS[0], "12/39", 1_000, "KRW")
    expect_error(422, owner.client.add_card, CARDS[0], "13/39", 1_000, "KRW")
    expect_error(422, owner.client.add_card, CARDS[0][:-1] + "0", "12/39", 1_000, "KRW")
    expect_error(422, owner.client.add_card, CARDS[0] + "0000", "12/39", 1_000, "KRW")
    for bad_body in (
        {"kind": "card", "number": int(CARDS[0]), "expiry": "12/39", "limit": 1, "currency": "KRW"},
        {"kind": "wallet", "number": CARDS[0], "balance": 1, "currency": "KRW"},
        {"kind": "card", "number": CARDS[0], "limit": 1, "currency": "KRW", "cvv": "123"},
    ):
        expect_error(422, owner.client._call, "POST", "/v1/funding-sources", bad_body)
    not_json = f'{{"kind": "card", "number": "{CARDS[0]}", '.encode()
    raw.post(f"{s.url}/v1/funding-sources", content=not_json)  # unauthenticated, broken JSON
    expect_error(404, target.client.set_source_status, card["source_id"], "closed")

    # Grants: issue, list, show, revoke, refusals.
    gid = s.issue(owner, card["source_id"], target, max_uses=5)
    wallet_gid = s.issue(owner, wallet["source_id"], target, amount_cap=1_000, max_uses=3)
    doomed = s.issue(owner, card["source_id"], target)
    owner.client.list_grants()
    target.client.list_grants()
    owner.client.get_grant(gid)
    target.client.get_grant(gid)
    expect_error(404, other_shop.client.get_grant, gid)
    expect_error(403, target.client.revoke_grant, gid)
    owner.client.revoke_grant(doomed)
    expect_error(404, owner.client.issue_grant, target_card["source_id"], [target.terminal_id],
                 amount_cap=1, currency="KRW")  # fmt: skip
    expect_error(422, owner.client.issue_grant, card["source_id"], ["t_nobody"],
                 amount_cap=1, currency="KRW")  # fmt: skip

    # Payments: approvals, a replay, a conflict, declines of every flavour.
    scene = s.scene(owner, target, shop, gid)
    key = f"k-{secrets.token_hex(6)}"
    challenge = secrets.token_bytes(16)
    first = s.pay(scene, 1_500, challenge=challenge, idempotency_key=key)
    assert first["status"] == "approved"
    assert s.pay(scene, 1_500, challenge=challenge, idempotency_key=key)["replayed"] is True
    expect_error(409, s.pay, scene, 1_600, challenge=challenge, idempotency_key=key)
    own = s.pay(scene, 3_000, grants=[(gid, scene.usage_auth(), 1_000)],
                own_source_id=target_card["source_id"], own_amount=2_000)  # fmt: skip
    assert own["status"] == "approved"
    wallet_scene = s.scene(owner, target, shop, wallet_gid)
    assert s.pay(wallet_scene, 400)["status"] == "approved"
    stranger = s.terminal("target")
    short_usage_auth = {"grant_id": gid, "usage_auth": crypto.b64e(b"not base64 !!"), "amount": 100}
    for attempt in (
        lambda: s.pay(scene, 100, presenter=stranger),
        lambda: s.pay(scene, 100, grants=[(gid, secrets.token_bytes(32), 100)]),
        lambda: s.pay(scene, 100, posted={"grants": [short_usage_auth]}),
        lambda: s.pay(scene, 200_000),
        lambda: s.pay(wallet_scene, 900),
        lambda: s.pay(scene, 100, challenge=challenge),
        lambda: s.pay(s.scene(owner, target, shop, doomed), 100),
        lambda: s.pay(scene, 100, currency="USD"),
    ):
        assert attempt()["status"] == "declined"
    means = build_signed_means(
        target, merchant=shop, challenge=challenge, amount=1, currency="KRW",
        grants=[(gid, scene.usage_auth(), 1)],
    )  # fmt: skip
    expect_error(403, owner.client.authorize_payment, amount=1, currency="KRW",
                 challenge=challenge, means=means)  # fmt: skip
    means["grants"][0]["usage_auth"] = crypto.b64e(scene.usage_auth()) + "A" * 40  # too long
    expect_error(422, shop.client.authorize_payment, amount=1, currency="KRW",
                 challenge=challenge, means=means)  # fmt: skip

    # Refunds and payment views.
    payment_id = first["payment_id"]
    shop.client.refund(payment_id, 500)
    expect_error(422, shop.client.refund, payment_id, 5_000)
    shop.client.refund(payment_id)
    expect_error(409, shop.client.refund, payment_id)
    expect_error(404, other_shop.client.refund, payment_id, 1)
    expect_error(404, other_shop.client.get_payment, payment_id)
    expect_error(403, owner.client.list_payments)
    shop.client.list_payments()
    shop.client.get_payment(payment_id)

    # Notifications, long-poll included.
    notes = owner.client.notifications()
    assert notes
    owner.client.notifications(after=notes[0]["notification_id"])
    owner.client.notifications(after=notes[-1]["notification_id"], wait=0.3)
    expect_error(422, target.client.notifications, after=notes[0]["notification_id"])

    # Unauthenticated, stale, replayed.
    body = json.dumps({"kind": "card", "number": CARDS[0], "expiry": "12/39", "limit": 1,
                       "currency": "KRW"}).encode()  # fmt: skip
    raw.post(f"{s.url}/v1/funding-sources", content=body)
    headers = owner.client._signed_headers("POST", "/v1/funding-sources", body)
    headers["Content-Type"] = "application/json"
    assert raw.post(f"{s.url}/v1/funding-sources", content=body, headers=headers).status_code == 201
    assert raw.post(f"{s.url}/v1/funding-sources", content=body, headers=headers).status_code == 401
    assert raw.get(f"{s.url}/v1/no-such-endpoint").status_code == 404


def test_no_secret_in_any_response_log_or_database_file(verbose_server: ServerProcess) -> None:
    recorder = Recorder()
    with httpx.Client(timeout=30, event_hooks={"response": [recorder.hook]}) as http:
        scenario = Scenario(verbose_server.url, http)
        run_scenario(scenario)
    log = verbose_server.log().encode()
    assert "DEBUG" in verbose_server.log()  # the log really is verbose
    database = b"".join(
        p.read_bytes() for p in Path(verbose_server.data_dir).glob("nfcpay.sqlite3*")
    )
    statuses = {status for _, status, _ in recorder.seen}
    assert {200, 201, 401, 403, 404, 409, 422} <= statuses

    leaks: list[str] = []
    secrets_by_name: dict[str, bytes | str] = {f"card {n}": n for n in scenario.cards}
    secrets_by_name |= {f"auth code of {g}": code for g, code in scenario.auth_codes.items()}
    secrets_by_name |= {f"usage-auth {i}": ua for i, ua in enumerate(scenario.usage_auths)}
    for name, secret in secrets_by_name.items():
        forms = spellings(secret)
        for line, status, content in recorder.seen:
            if _own_issuance(name, line, status, content):
                continue
            if any(form in content for form in forms):
                leaks.append(f"{name} in the answer to {line} ({status})")
        if any(form in log for form in forms):
            leaks.append(f"{name} in the server log")
        if any(form in database for form in forms):
            leaks.append(f"{name} in the database file")
    assert leaks == []
    assert len(recorder.seen) > 60


def _own_issuance(name: str, line: str, status: int, content: bytes) -> bool:
    """The issuance answer of grant G legitimately carries G's auth code."""
    if not (name.startswith("auth code of ") and line == "POST /v1/grants" and status == 201):
        return False
    return json.loads(content)["grant"]["grant_id"] == name.removeprefix("auth code of ")
