"""A group at a counter, through the HTTP API: a collector (target terminal) with its own
wallet, members (user terminals) each with a card or wallet, and a merchant.

Works against a real server process (``url``) or the in-process app (``http``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from nfcpay import crypto
from nfcpay.testing.server import Terminal, build_signed_means, register_terminal

CURRENCY = "KRW"
CARD = "4111111111111111"


@dataclass
class Member:
    terminal: Terminal
    source: dict[str, Any]
    grant_id: str = ""
    auth_code: bytes = b""
    share: int = 0

    def usage_auth(self, presenter: Terminal) -> bytes:
        return crypto.usage_auth(
            self.auth_code, self.grant_id, self.terminal.terminal_id, presenter.terminal_id
        )


@dataclass
class Group:
    url: str
    http: httpx.Client | None
    collector: Terminal
    own_source: dict[str, Any]
    merchant: Terminal
    members: list[Member] = field(default_factory=list)

    @classmethod
    def create(
        cls, url: str, *, http: httpx.Client | None = None, own_balance: int = 1_000_000
    ) -> Group:
        collector = register_terminal(url, "target", http=http)
        merchant = register_terminal(url, "merchant", http=http)
        own = collector.client.add_wallet(own_balance, CURRENCY)
        return cls(url, http, collector, own, merchant)

    def add_member(self, *, card_limit: int | None = None, wallet: int | None = None) -> Member:
        terminal = register_terminal(self.url, "user", http=self.http)
        if wallet is not None:
            source = terminal.client.add_wallet(wallet, CURRENCY)
        else:
            source = terminal.client.add_card(CARD, "12/39", card_limit or 1_000_000, CURRENCY)
        member = Member(terminal, source)
        self.members.append(member)
        return member

    def open_bill(self, total: int, *, mode: str = "exact") -> str:
        """The collector opens a bill with the server, as ``group collect`` does: its id."""
        opened = self.collector.client.open_bill(total=total, currency=CURRENCY, mode=mode)
        return str(opened["bill_id"])

    def issue(
        self,
        member: Member,
        share: int,
        bill_id: str | None,
        *,
        to: Terminal | None = None,
        expires_in: timedelta = timedelta(minutes=15),
        **rights: Any,
    ) -> Member:
        """The grant ``group join`` issues: capped at the share, one use, bound to the bill."""
        answer = member.terminal.client.issue_grant(
            member.source["source_id"],
            [(to or self.collector).terminal_id],
            amount_cap=rights.pop("amount_cap", share),
            currency=CURRENCY,
            max_uses=1,
            valid_until=datetime.now(UTC) + expires_in,
            bill_id=bill_id,
            **rights,
        )
        member.grant_id = answer["grant"]["grant_id"]
        member.auth_code = crypto.b64d(answer["auth_code"])
        member.share = share
        return member

    def pay(
        self,
        amount: int,
        bill_id: str | None,
        *,
        members: list[Member] | None = None,
        own_amount: int | None = None,
        split_mode: str = "exact",
        presenter: Terminal | None = None,
        usage_auths: dict[str, bytes] | None = None,
        idempotency_key: str | None = None,
        merchant: Terminal | None = None,
    ) -> dict[str, Any]:
        """The collector's means for the bill, as the merchant sends them to the server."""
        presenter = presenter or self.collector
        merchant = merchant or self.merchant
        chosen = self.members if members is None else members
        grants = [
            (m.grant_id, (usage_auths or {}).get(m.grant_id, m.usage_auth(presenter)), m.share)
            for m in chosen
        ]
        own_source = self.own_source["source_id"] if own_amount else None
        challenge = secrets.token_bytes(16)
        means = build_signed_means(
            presenter,
            merchant=merchant,
            challenge=challenge,
            amount=amount,
            currency=CURRENCY,
            grants=grants,
            own_source_id=own_source,
            own_amount=own_amount,
            bill_id=bill_id,
            split_mode=split_mode,
        )
        return merchant.client.authorize_payment(
            amount=amount,
            currency=CURRENCY,
            challenge=challenge,
            means=means,
            bill_id=bill_id,
            split_mode=split_mode,
            idempotency_key=idempotency_key,
        )

    def charged(self) -> dict[str, int]:
        """What each source has been charged so far (card outstanding or wallet spent)."""
        out = {}
        for who, start in [(self.collector, self.own_source), *self._member_sources()]:
            for source in who.client.list_sources():
                if source["source_id"] == start["source_id"]:
                    out[source["source_id"]] = (
                        source["outstanding"]
                        if source["kind"] == "card"
                        else start["balance"] - source["balance"]
                    )
        return out

    def _member_sources(self) -> list[tuple[Terminal, dict[str, Any]]]:
        return [(m.terminal, m.source) for m in self.members]
