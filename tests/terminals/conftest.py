"""Terminal homes registered with an in-process server (the real app and SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from nfcpay.client import PaymentClient
from nfcpay.terminals.account import connect, init_terminal
from nfcpay.terminals.held import HeldGrant, HeldGrants
from nfcpay.terminals.home import TerminalHome
from nfcpay.terminals.user import Rights, grant_record, issue
from nfcpay.testing.server import DEFAULT_MERCHANT, InProcessServer


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


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    with InProcessServer(tmp_path / "server") as server:
        homes = {}
        for role in ("user", "target", "merchant"):
            home = TerminalHome(tmp_path / role)
            init_terminal(
                home,
                role=role,
                label=role,
                server_url=server.url,
                merchant=DEFAULT_MERCHANT if role == "merchant" else None,
                transport=SharedTransport(server.transport),
            )
            homes[role] = home
        scene = Scene(server, homes["user"], homes["target"], homes["merchant"])
        with scene.client(scene.user) as client:
            client.add_card("4111111111111111", "12/39", 100_000, "KRW")
        yield scene
