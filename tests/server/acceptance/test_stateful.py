"""Issue 2, acceptance 4: random issue / authorize / refund / revoke sequences keep every
invariant of the books.

A hypothesis state machine drives the real app (``create_app`` on a temporary SQLite file,
in-process for speed) through the signed client, and keeps its own model of every grant and
funding source. Each payment's outcome (approved, or the exact decline code) is predicted by
the model; after every step the database must satisfy:

* the ledger sums to zero, and :func:`nfcpay.server.ledger.audit` finds nothing;
* wallet and bank balances are ≥ 0; card outstanding is within 0..limit;
* each grant's remaining uses and amount are ≥ 0 and equal to its rights minus its approved
  payments (plus refunds for the amount; a refund never gives a use back);
* every grant and source agrees with the model.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from nfcpay import crypto
from nfcpay.errors import ApiError
from nfcpay.testing.server import InProcessServer, Terminal, build_signed_means, register_terminal

CURRENCY = "KRW"


@dataclass
class SourceModel:
    source_id: str
    kind: str
    available: int


@dataclass
class GrantModel:
    grant_id: str
    auth_code: bytes
    source_id: str
    amount_cap: int
    max_uses: int
    per_use_cap: int | None
    remaining_amount: int
    remaining_uses: int
    revoked: bool = False


@dataclass
class PaymentModel:
    payment_id: str
    amount: int
    grant_ids: list[str]
    refunded: int = 0


@dataclass
class World:
    """The terminals one state machine run plays with, on the shared server."""

    server: InProcessServer
    owner: Terminal
    target: Terminal
    shop: Terminal
    sources: list[SourceModel] = field(default_factory=list)


def _decline_code(
    world: World, grants: dict[str, GrantModel], shares: list[tuple[GrantModel, int]]
) -> str | None:
    """What the server must answer for ``shares`` (None = approve), by the contract's rules:
    grant rules per share in request order first, then each source's total, sorted by id."""
    failures: list[str] = []
    totals: dict[str, int] = {}
    for grant, amount in shares:
        if grant.revoked:
            failures.append("grant_revoked")
        elif grant.remaining_uses <= 0:
            failures.append("no_uses_left")
        elif grant.per_use_cap is not None and amount > grant.per_use_cap:
            failures.append("over_per_use_cap")
        elif amount > grant.remaining_amount:
            failures.append("over_remaining_cap")
        else:
            totals[grant.source_id] = totals.get(grant.source_id, 0) + amount
    by_id = {source.source_id: source for source in world.sources}
    for source_id in sorted(totals):
        source = by_id[source_id]
        if source.available < totals[source_id]:
            failures.append("limit_exceeded" if source.kind == "card" else "insufficient_balance")
    return failures[0] if failures else None


class Books(RuleBasedStateMachine):
    """One owner, one target, one merchant; a card and a wallet; grants come and go."""

    grants = Bundle("grants")

    def __init__(self, server: InProcessServer) -> None:
        super().__init__()
        connect = {"http": server.http}
        self.world = World(
            server,
            register_terminal(server.url, "user", **connect),
            register_terminal(server.url, "target", **connect),
            register_terminal(server.url, "merchant", **connect),
        )
        self.models: dict[str, GrantModel] = {}
        self.payments: list[PaymentModel] = []

    # --- set-up --------------------------------------------------------------------------

    @initialize(limit=st.integers(0, 3_000), balance=st.integers(0, 2_000))
    def open_sources(self, limit: int, balance: int) -> None:
        client = self.world.owner.client
        card = client.add_card(
            number="4111111111111111", expiry="12/39", limit=limit, currency=CURRENCY
        )
        wallet = client.add_wallet(balance, CURRENCY)
        self.world.sources = [
            SourceModel(card["source_id"], "card", limit),
            SourceModel(wallet["source_id"], "wallet", balance),
        ]

    @rule(
        target=grants,
        on_wallet=st.booleans(),
        cap=st.integers(1, 1_500),
        uses=st.integers(1, 4),
        per_use=st.one_of(st.none(), st.none(), st.integers(1, 1_500)),
    )
    def issue(self, on_wallet: bool, cap: int, uses: int, per_use: int | None) -> str:
        source = self.world.sources[int(on_wallet)]
        per_use = None if per_use is None else min(per_use, cap)
        issued = self.world.owner.client.issue_grant(
            source.source_id,
            [self.world.target.terminal_id],
            amount_cap=cap,
            max_uses=uses,
            per_use_cap=per_use,
            currency=CURRENCY,
        )
        grant = issued["grant"]
        assert (grant["remaining_amount"], grant["remaining_uses"]) == (cap, uses)
        model = GrantModel(
            grant["grant_id"],
            crypto.b64d(issued["auth_code"]),
            source.source_id,
            cap,
            uses,
            per_use,
            cap,
            uses,
        )
        self.models[model.grant_id] = model
        return model.grant_id

    # --- the actions ---------------------------------------------------------------------

    @rule(
        first=grants,
        second=st.none() | grants,
        amounts=st.tuples(st.integers(1, 500), st.integers(1, 500)),
    )
    def authorize(self, first: str, second: str | None, amounts: tuple[int, int]) -> None:
        ids = [first] if second is None or second == first else [first, second]
        shares = [(self.models[gid], amount) for gid, amount in zip(ids, amounts, strict=False)]
        expected = _decline_code(self.world, self.models, shares)
        answer = self._pay(shares)
        event(f"{len(shares)} share(s): {expected or 'approved'}")
        if expected is not None:
            assert answer["status"] == "declined", (expected, answer)
            assert answer["decline_code"] == expected, answer
            return
        assert answer["status"] == "approved", (expected, answer)
        by_id = {source.source_id: source for source in self.world.sources}
        for grant, amount in shares:
            grant.remaining_amount -= amount
            grant.remaining_uses -= 1
            by_id[grant.source_id].available -= amount
        self.payments.append(PaymentModel(answer["payment_id"], answer["amount"], ids))

    def _pay(self, shares: list[tuple[GrantModel, int]]) -> dict[str, Any]:
        world = self.world
        challenge = secrets.token_bytes(16)
        presented = [
            (
                grant.grant_id,
                crypto.usage_auth(
                    grant.auth_code,
                    grant.grant_id,
                    world.owner.terminal_id,
                    world.target.terminal_id,
                ),
                amount,
            )
            for grant, amount in shares
        ]
        total = sum(amount for _, amount in shares)
        means = build_signed_means(
            world.target,
            merchant=world.shop,
            challenge=challenge,
            amount=total,
            currency=CURRENCY,
            grants=presented,
        )
        return world.shop.client.authorize_payment(
            amount=total, currency=CURRENCY, challenge=challenge, means=means
        )

    @precondition(lambda self: any(p.refunded < p.amount for p in self.payments))
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        open_payments = [p for p in self.payments if p.refunded < p.amount]
        payment = data.draw(st.sampled_from(open_payments))
        left = payment.amount - payment.refunded
        amount = data.draw(st.none() | st.integers(1, left))
        before = self._share_refunds(payment.payment_id)
        answer = self.world.shop.client.refund(payment.payment_id, amount)
        given = left if amount is None else amount
        assert (answer["amount"], answer["remaining_refundable"]) == (given, left - given)
        payment.refunded += given
        after = self._share_refunds(payment.payment_id)
        deltas = {key: after[key] - before[key] for key in after}
        assert sum(deltas.values()) == given and min(deltas.values()) >= 0
        by_id = {source.source_id: source for source in self.world.sources}
        for (grant_id, source_id), part in deltas.items():
            self.models[grant_id].remaining_amount += part  # the amount comes back, the use not
            by_id[source_id].available += part

    def _share_refunds(self, payment_id: str) -> dict[tuple[str, str], int]:
        rows = self.world.server.query(
            lambda tx: tx.all(
                "SELECT grant_id, source_id, refunded FROM payment_shares WHERE payment_id = ?",
                (payment_id,),
            )
        )
        return {(row["grant_id"], row["source_id"]): int(row["refunded"]) for row in rows}

    @precondition(lambda self: bool(self.payments))
    @rule(data=st.data())
    def refund_too_much(self, data: st.DataObject) -> None:
        payment = data.draw(st.sampled_from(self.payments))
        left = payment.amount - payment.refunded
        try:
            self.world.shop.client.refund(payment.payment_id, left + 1)
        except ApiError as error:
            expected = (409, "fully_refunded") if left == 0 else (422, "over_refundable")
            assert (error.status, error.code) == expected
        else:
            raise AssertionError("a refund over the refundable amount was accepted")

    @rule(grant_id=grants, now=st.integers(0, 3))
    def revoke(self, grant_id: str, now: int) -> None:
        if now:  # revoke one time in four, so grants live long enough to be used up
            return
        answer = self.world.owner.client.revoke_grant(grant_id)
        assert answer["status"] == "revoked"
        self.models[grant_id].revoked = True

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def books_balance(self) -> None:
        assert self.world.server.audit() == []
        problems = self.world.server.query(_invariant_breaches)
        assert problems == [], problems

    @invariant()
    def model_agrees(self) -> None:
        ids = [g.grant_id for g in self.models.values()]
        rows = self.world.server.query(
            lambda tx: {
                "grants": {
                    r["grant_id"]: (int(r["remaining_amount"]), int(r["remaining_uses"]))
                    for r in tx.all(
                        "SELECT grant_id, remaining_amount, remaining_uses FROM grants "
                        "WHERE issuing_terminal = ?",
                        (self.world.owner.terminal_id,),
                    )
                },
            }
        )
        assert set(rows["grants"]) == set(ids)
        for model in self.models.values():
            assert rows["grants"][model.grant_id] == (model.remaining_amount, model.remaining_uses)
        shown = {s["source_id"]: s["available"] for s in self.world.owner.client.list_sources()}
        assert shown == {s.source_id: s.available for s in self.world.sources}


def _invariant_breaches(tx: Any) -> list[str]:
    """Independent SQL checks of the invariants (not reusing the server's audit)."""
    problems = []
    total = tx.scalar("SELECT COALESCE(SUM(amount), 0) AS total FROM ledger_entries")
    if int(total) != 0:
        problems.append(f"ledger sums to {total}")
    for row in tx.all(
        "SELECT source_id, kind, balance, outstanding, credit_limit FROM funding_sources"
    ):
        if row["kind"] == "card":
            if not 0 <= int(row["outstanding"]) <= int(row["credit_limit"]):
                problems.append(f"card {row['source_id']} outstanding {row['outstanding']}")
        elif int(row["balance"]) < 0:
            problems.append(f"{row['kind']} {row['source_id']} balance {row['balance']}")
    for row in tx.all(
        "SELECT g.grant_id, g.amount_cap, g.max_uses, g.remaining_amount, g.remaining_uses, "
        "(SELECT COUNT(*) FROM payment_shares s WHERE s.grant_id = g.grant_id) AS uses, "
        "(SELECT COALESCE(SUM(s.amount - s.refunded), 0) FROM payment_shares s "
        " WHERE s.grant_id = g.grant_id) AS net FROM grants g"
    ):
        gid = row["grant_id"]
        if int(row["remaining_uses"]) < 0 or int(row["remaining_amount"]) < 0:
            problems.append(f"grant {gid} below zero")
        if int(row["remaining_uses"]) != int(row["max_uses"]) - int(row["uses"]):
            problems.append(f"grant {gid} uses disagree with its payments")
        if int(row["remaining_amount"]) != int(row["amount_cap"]) - int(row["net"]):
            problems.append(f"grant {gid} amount disagrees with its payments and refunds")
    return problems


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    server = InProcessServer(Path(tmp_path_factory.mktemp("stateful")))
    try:
        yield server
    finally:
        server.close()


@pytest.mark.slow
def test_random_sequences_keep_the_books(app_server: InProcessServer) -> None:
    run_state_machine_as_test(
        lambda: Books(app_server),
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
