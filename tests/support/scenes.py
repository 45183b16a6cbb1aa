"""Terminal homes around an in-process server (:class:`Scene`), and the steps several
flow tests take with them (a challenge, a pending charge, two sides run at once)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from nfcpay.client import PaymentClient
from nfcpay.records import ChallengeRecord
from nfcpay.terminals import merchant, target
from nfcpay.terminals.account import connect
from nfcpay.terminals.held import HeldGrant, HeldGrants, choose_shares
from nfcpay.terminals.home import TerminalHome
from nfcpay.terminals.user import Rights, grant_record, issue
from nfcpay.testing.server import InProcessServer


class SharedTransport(httpx.BaseTransport):
    """The server's in-process transport, left open when one client closes."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.inner.handle_request(request)

    def close(self) -> None:
        """The server fixture closes the real transport."""


@dataclass
class Scene:
    server: InProcessServer
    user: TerminalHome
    target: TerminalHome
    merchant: TerminalHome

    def client(self, home: TerminalHome, url: str | None = None) -> PaymentClient:
        return connect(home, url, transport=SharedTransport(self.server.transport))

    def give(self, rights: Rights) -> str:
        """Issue a grant for the target and put it in the target's home (no NFC)."""
        with self.client(self.user) as client:
            grant = issue(self.user, client, to=self.target.identity().terminal_id, rights=rights)
        record = grant_record(
            self.user.get("grants", grant["grant_id"]),
            self.user.identity(),
            self.target.identity().terminal_id,
        )
        HeldGrants(self.target).put(HeldGrant.received(record))
        return record.grant_id


def challenge_for(scene: Scene, amount: int, **extra: Any) -> ChallengeRecord:
    """The merchant's challenge, for its primary category unless ``extra`` says otherwise."""
    extra.setdefault("purpose", "5812")
    return ChallengeRecord(
        merchant_id=str(scene.merchant.identity().merchant_id),
        currency="KRW",
        amount=amount,
        nonce=secrets.token_bytes(16),
        **extra,
    )


def pending_charge(
    scene: Scene, amount: int, challenge: ChallengeRecord | None = None
) -> merchant.Charge:
    """What the merchant stores on receiving means: a pending receipt with the request."""
    challenge = challenge or challenge_for(scene, amount)
    shares = choose_shares(scene.target, challenge)
    means = target.sign_means(scene.target, scene.target.identity(), challenge, shares)
    return merchant._pending(
        scene.merchant, challenge, means, merchant.payment_request(challenge, means)
    )


def both(first: Callable[[], Any], second: Callable[[], Any]) -> tuple[Any, Any]:
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.submit(first), pool.submit(second)
        return a.result(timeout=30), b.result(timeout=30)
