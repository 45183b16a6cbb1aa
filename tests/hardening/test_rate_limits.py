"""Guessing and flooding (issue 6, attack suite), against real server processes:
per-terminal request limits answer 429 with Retry-After; repeated bad signatures from one
terminal are throttled; repeated wrong usage-auth values lock the grant and notify its owner.

Waiting out a Retry-After moves the server's test clock (:meth:`ServerProcess.advance`)
instead of sleeping. The budgets refill slowly (a token per 2 s, per 10 s), so the few real
milliseconds the test takes cannot refill one: the counts below do not depend on speed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from nfcpay import crypto
from nfcpay.client import PaymentClient, signed_headers
from nfcpay.errors import ServerUnavailable
from nfcpay.testing.server import payment_scene, register_terminal
from tests.support.harness import start_server
from tests.support.network import no_retry

LIMITS = {
    "NFCPAY_SERVER_RATE_LIMIT": "0.5",
    "NFCPAY_SERVER_RATE_BURST": "5",
    "NFCPAY_SERVER_AUTH_FAILURE_BURST": "3",
    "NFCPAY_SERVER_AUTH_FAILURE_RATE": "0.1",
}


def test_per_terminal_request_limit_429_with_retry_after(tmp_path: Path) -> None:
    with start_server(tmp_path / "srv", env=LIMITS, test_clock=True) as server:
        busy = register_terminal(server.url, "user")
        calm = register_terminal(server.url, "user")
        client = no_retry(busy, server.url)
        answered = 0
        with pytest.raises(ServerUnavailable) as caught:
            for _ in range(10):
                client.me()
                answered += 1
        assert answered == 5, "the burst, then 429"
        error = caught.value
        assert (error.status, error.code) == (429, "rate_limited")
        assert error.retry_after_s is not None and error.retry_after_s >= 1
        assert calm.client.me()["terminal_id"] == calm.terminal_id, "limits are per terminal"

        server.advance(error.retry_after_s)
        assert client.me()["terminal_id"] == busy.terminal_id

        # The regular client honours Retry-After and retries idempotent calls by itself; its
        # waits move the server's clock here.
        waits: list[float] = []

        def wait(seconds: float) -> None:
            waits.append(seconds)
            server.advance(seconds)

        with PaymentClient(server.url, busy.terminal_id, busy.private_key, sleep=wait) as patient:
            for _ in range(2):
                assert patient.me()["terminal_id"] == busy.terminal_id
        assert waits, "the bucket was empty: the client had to wait"
        assert min(waits) >= error.retry_after_s, waits


def test_bad_signatures_from_one_terminal_are_throttled(tmp_path: Path) -> None:
    with start_server(tmp_path / "srv", env=LIMITS, test_clock=True) as server:
        victim = register_terminal(server.url, "user")
        forger = crypto.generate_terminal_key()
        with httpx.Client(base_url=server.url) as http:

            def forged() -> httpx.Response:
                path = "/v1/terminals/me"
                headers = signed_headers(victim.terminal_id, forger, "GET", path, b"")
                return http.get(path, headers=headers)

            statuses = [forged().status_code for _ in range(6)]
            assert statuses[:3] == [401, 401, 401]
            assert statuses[3:] == [429, 429, 429]
            throttled = forged()
            assert throttled.json()["error"] == "rate_limited"
            retry_after = int(throttled.headers["Retry-After"])
            assert retry_after >= 1
            # The failure budget refills (1 per 10 s here): after Retry-After, verification
            # resumes.
            server.advance(retry_after)
            assert forged().status_code == 401


def test_wrong_usage_auth_locks_grant_and_notifies_owner(tmp_path: Path) -> None:
    with start_server(tmp_path / "srv") as server:
        scene = payment_scene(server.url, max_uses=10)
        declines = []
        for _ in range(5):
            guess = [(scene.grant_id, secrets.token_bytes(32), 1_000)]
            declines.append(scene.pay(1_000, grants=guess)["decline_code"])
        assert declines[:4] == ["usage_auth_mismatch"] * 4
        assert declines[4] in {"usage_auth_mismatch", "grant_locked"}
        # Even the genuine usage-auth is refused now: the grant is locked.
        assert scene.pay(1_000)["decline_code"] == "grant_locked"
        assert scene.owner.client.get_grant(scene.grant_id)["status"] == "locked"

        kinds = [n["kind"] for n in scene.owner.client.notifications()]
        assert kinds.count("usage_auth_mismatch") == 5
        assert kinds.count("grant_locked") == 1
        assert all(n["grant_id"] == scene.grant_id for n in scene.owner.client.notifications())
        assert scene.target.client.notifications() == [], "only the owner is told"
        assert server.audit() == []


def _forger(http: httpx.Client, terminal_id: str) -> Callable[..., int]:
    """Send GET /v1/terminals/me in ``terminal_id``'s name, signed with a key of its own;
    ``forwarded_for`` sets X-Forwarded-For. Answers the status code."""
    key = crypto.generate_terminal_key()

    def forged(forwarded_for: str | None = None) -> int:
        path = "/v1/terminals/me"
        headers = signed_headers(terminal_id, key, "GET", path, b"")
        if forwarded_for is not None:
            headers["X-Forwarded-For"] = forwarded_for
        return http.get(path, headers=headers).status_code

    return forged


def test_x_forwarded_for_from_an_untrusted_peer_does_not_escape_the_failure_throttle(
    tmp_path: Path,
) -> None:
    """By default no proxy is trusted: a client on loopback that names another address in
    each request is still one client, and its failures share one budget."""
    with start_server(tmp_path / "srv", env=LIMITS, test_clock=True) as server:
        victim = register_terminal(server.url, "user")
        with httpx.Client(base_url=server.url) as http:
            forged = _forger(http, victim.terminal_id)
            statuses = [forged(f"203.0.113.{n}") for n in range(15)]
        assert statuses == [401] * 3 + [429] * 12


def test_x_forwarded_for_is_honoured_from_a_configured_proxy(tmp_path: Path) -> None:
    """``--forwarded-allow-ips 127.0.0.1``: requests arriving from the proxy count against the
    client address the proxy names, each address with a budget of its own."""
    args = ["--forwarded-allow-ips", "127.0.0.1"]
    with start_server(tmp_path / "srv", env=LIMITS, test_clock=True, args=args) as server:
        victim = register_terminal(server.url, "user")
        with httpx.Client(base_url=server.url) as http:
            forged = _forger(http, victim.terminal_id)
            first = [forged("203.0.113.1") for _ in range(5)]
            second = [forged("203.0.113.2") for _ in range(5)]
        assert first == second == [401] * 3 + [429] * 2


def test_forged_requests_in_a_terminals_name_do_not_lock_the_terminal_out(
    tmp_path: Path,
) -> None:
    """Behind a load balancer every client shares one address: failures in a terminal's name
    must slow the forger down without refusing the terminal's own signed requests."""
    with start_server(tmp_path / "srv", env=LIMITS, test_clock=True) as server:
        victim = register_terminal(server.url, "user")
        genuine = no_retry(victim, server.url)
        with httpx.Client(base_url=server.url) as http:
            forged = _forger(http, victim.terminal_id)
            assert [forged() for _ in range(6)] == [401] * 3 + [429] * 3
            for _ in range(3):
                assert genuine.me()["terminal_id"] == victim.terminal_id
                assert forged() == 429, "the forger is still throttled"
