"""The demo's story: a card owner, a target, a merchant and a stranger, step by step.

Each step runs terminals on the :class:`~nfcpay.cli.demo.stage.Stage` and checks what it
observed against what the story expects.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import click

from nfcpay.cli.demo.stage import Json, Stage, finish, krw
from nfcpay.names import labelled

CARD = "4111111111111111"


@dataclass
class Step:
    name: str
    story: str
    ok: bool
    expected: str
    observed: Json = field(default_factory=dict)
    seconds: float = 0.0


class Story:
    """The demo's steps, each checking what it observed against what it expects."""

    def __init__(self, stage: Stage, say: Callable[[str], None]) -> None:
        self.stage = stage
        self.say = say
        self.steps: list[Step] = []
        self.ids: dict[str, str] = {}

    def record(
        self, name: str, story: str, ok: bool, expected: str, started: float, observed: Json
    ) -> None:
        step = Step(name, story, ok, expected, observed, round(time.monotonic() - started, 3))
        self.steps.append(step)
        mark = click.style("ok", fg="green") if ok else click.style("UNEXPECTED", fg="red")
        self.say(f"{len(self.steps)}. {story}  [{mark}]")
        if not ok:
            self.say(f"   expected {expected}; observed {json.dumps(observed)[:600]}")

    def terminals(self) -> None:
        started = time.monotonic()
        roles = {
            "user": ("user", "Alice"),
            "target": ("target", "Bob"),
            "merchant": ("merchant", "Corner Bistro"),
            "stranger": ("target", "Mallory"),
        }
        processes = {
            name: self.stage.start(name, "terminal", "init", "--role", role, "--label", label)
            for name, (role, label) in roles.items()
        }
        outcomes = {name: finish(process) for name, process in processes.items()}
        self.ids = {name: o.data.get("terminal_id", "?") for name, o in outcomes.items()}
        self.ids["merchant_id"] = outcomes["merchant"].data.get("merchant_id") or "?"
        ok = all(o.status == 0 and o.data.get("ok") for o in outcomes.values())
        named = {name: labelled(label, self.ids[name]) for name, (_, label) in roles.items()}
        named["merchant"] = labelled(roles["merchant"][1], self.ids["merchant_id"])
        self.record(
            "terminals",
            f"Four terminals register with the server: {named['user']}, the card owner's user "
            f"terminal; {named['target']}, the target who pays for her; {named['merchant']}, the "
            f"merchant; and {named['stranger']}, a stranger with a target terminal of her own.",
            ok,
            "four terminals registered (exit 0)",
            started,
            {name: {"status": o.status, **o.data} for name, o in outcomes.items()},
        )

    def card(self) -> None:
        started = time.monotonic()
        out = self.stage.run(
            "user", "user", "add-card", "--number", CARD, "--expiry", "12/39", "--limit", "500,000"
        )
        source = out.data.get("source", {})
        self.record(
            "card",
            f"Alice registers her card {source.get('masked')} with a {krw(500_000)} limit; "
            "the number stays on the server.",
            out.status == 0 and source.get("available") == 500_000,
            "a card source with 500,000 KRW available",
            started,
            {"status": out.status, **out.data},
        )

    def give(self, name: str, cap: int, uses: int) -> str:
        started = time.monotonic()
        giver, taker = self.stage.tap(
            ("user", "user", "give", "--amount", str(cap), "--uses", str(uses), "--yes"),
            ("target", "target", "receive"),
        )
        grant = taker.data.get("grant", {})
        seen = giver.data.get("tapped", {}).get("key_fingerprint")
        ok = (
            giver.status == 0
            and taker.status == 0
            and grant.get("amount_cap") == cap
            and seen == taker.data.get("key_fingerprint")
        )
        self.record(
            name,
            f"Bob taps Alice's phone: she gives him grant {grant.get('grant_id')} worth "
            f"{krw(cap)} for {uses} use{'s' if uses > 1 else ''}, and confirms it for the key "
            f"fingerprint his screen shows ({seen}).",
            ok,
            f"grant with cap {cap} received by the target and confirmed for the fingerprint "
            "it shows (exit 0 on both sides)",
            started,
            {
                "user": {"status": giver.status, **giver.data},
                "target": {"status": taker.status, **taker.data},
            },
        )
        return str(grant.get("grant_id", "g_missing"))

    def send_remote(self, cap: int) -> str:
        """Alice, away from the counter, sends Bob a grant through the server; he fetches it."""
        started = time.monotonic()
        sent = self.stage.run(
            "user", "user", "send", "--to", self.ids["target"], "--amount", str(cap)
        )
        fetched = self.stage.run("target", "target", "receive", "--remote")
        grant_id = sent.data.get("grant", {}).get("grant_id")
        received = [
            item.get("grant", {}).get("grant_id") for item in fetched.data.get("received", [])
        ]
        self.record(
            "remote",
            f"Alice is not at the counter: she sends Bob grant {grant_id} worth {krw(cap)} "
            "through the server, and Bob fetches it (`target receive --remote`); the server "
            "keeps it for his terminal alone and deletes it once he has it.",
            sent.status == 0 and fetched.status == 0 and received == [grant_id],
            "the grant sent is the one grant the target fetched (exit 0 on both sides)",
            started,
            {
                "user": {"status": sent.status, **sent.data},
                "target": {"status": fetched.status, **fetched.data},
            },
        )
        return str(grant_id or "g_missing")

    def pay(
        self, name: str, payer: str, amount: int, grant_id: str | None, expect: str, story: str
    ) -> None:
        started = time.monotonic()
        pay_args: tuple[str, ...] = (payer, "target", "pay")
        if grant_id:
            pay_args += ("--grant", grant_id)
        shop, customer = self.stage.tap(
            ("merchant", "merchant", "charge", "--amount", str(amount)), pay_args
        )
        observed = shop.data.get("decline_code") or shop.data.get("status")
        status = 0 if expect == "approved" else 3
        ok = (
            observed == expect
            and shop.status == status
            and customer.status == status
            and customer.data.get("status") == shop.data.get("status")
        )
        self.record(
            name,
            story.format(amount=krw(amount), outcome=_outcome(shop.data)),
            ok,
            f"{expect} (exit {status} on both sides)",
            started,
            {
                "merchant": {"status": shop.status, **shop.data},
                "target": {"status": customer.status, **customer.data},
            },
        )

    def copy_grant(self, grant_id: str) -> None:
        source = self.stage.home("target") / "grants" / f"{grant_id}.json"
        destination = self.stage.home("stranger") / "grants"
        destination.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copy2(source, destination / source.name)

    def owner_notified(self, grant_id: str) -> None:
        started = time.monotonic()
        out = self.stage.run("user", "user", "notifications")
        hits = [
            n
            for n in out.data.get("notifications", [])
            if n.get("kind") == "terminal_not_allowed" and n.get("grant_id") == grant_id
        ]
        self.record(
            "owner_notified",
            f"Alice's notifications show the attempt: {hits[0]['message'] if hits else 'none'}",
            out.status == 0 and len(hits) == 1,
            "one terminal_not_allowed notification for the copied grant",
            started,
            {"status": out.status, **out.data},
        )


def _outcome(data: Json) -> str:
    if data.get("status") == "approved":
        return f"approved (payment {data.get('payment_id')}, approval {data.get('approval_code')})"
    return f"declined: {data.get('decline_code')} — {data.get('message')}"


def run_story(stage: Stage, say: Callable[[str], None]) -> list[Step]:
    story = Story(stage, say)
    story.terminals()
    story.card()
    first = story.give("give", 30_000, 1)
    story.pay(
        "pay", "target", 12_000, None, "approved",
        "Bob pays {amount} at the Corner Bistro with it: {outcome}. 18,000 KRW of the cap is "
        "left, but no use.",
    )  # fmt: skip
    story.pay(
        "pay_again", "target", 5_000, first, "no_uses_left",
        "Bob tries the same grant again for {amount}: {outcome}.",
    )  # fmt: skip
    second = story.give("give_second", 20_000, 2)
    story.copy_grant(second)
    story.pay(
        "stranger", "stranger", 8_000, second, "terminal_not_allowed",
        "Mallory copied Bob's stored grant (usage-auth and all) and presents it for {amount}: "
        "{outcome}. She cannot sign as Bob's terminal.",
    )  # fmt: skip
    story.owner_notified(second)
    story.pay(
        "over_cap", "target", 25_000, second, "over_remaining_cap",
        "Bob tries to spend {amount} on the 20,000 KRW grant: {outcome}.",
    )  # fmt: skip
    remote = story.send_remote(10_000)
    story.pay(
        "remote_pay", "target", 8_000, remote, "approved",
        "Bob pays {amount} at the Corner Bistro with the grant sent through the server: "
        "{outcome}.",
    )  # fmt: skip
    return story.steps
