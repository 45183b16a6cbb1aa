"""``nfcpay demo --group N``: the group story (issue 5) on the demo's stage.

N members and a collector split a bill equally; one member's card is over its limit, so the
whole bill is declined with that member named and nothing charged anywhere; the collector
drops the member, a replacement joins with one tap, and the bill is approved.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from nfcpay.cli.demo.stage import TAP_TIMEOUT, Outcome, Stage, finish, krw
from nfcpay.cli.demo.story import Step, Story
from nfcpay.names import labelled

SHARE = 20_000
CARDS = (
    "4111111111111111",
    "5555555555554444",
    "4012888888881881",
    "378282246310005",
    "6011111111111117",
    "3530111333300000",
    "5105105105105100",
    "4222222222222",
    "6011000990139424",
)


def run_group_story(stage: Stage, say: Callable[[str], None], members: int) -> list[Step]:
    story = Story(stage, say)
    names = [f"member{i + 1}" for i in range(members)]
    total = SHARE * (members + 1)
    ids = _register(story, names)
    poor = names[-1]
    _bill_paid(story, names, ids, poor, total)
    return story.steps


def _register(story: Story, names: list[str]) -> dict[str, str]:
    stage, started = story.stage, time.monotonic()
    roles = {"collector": "target", "merchant": "merchant", "spare": "user"}
    roles.update({name: "user" for name in names})
    outcomes = {
        name: finish(stage.start(name, "terminal", "init", "--role", role, "--label", name))
        for name, role in roles.items()
    }
    ids = {name: str(o.data.get("terminal_id", "?")) for name, o in outcomes.items()}
    added = [stage.run("collector", "user", "add-wallet", "--balance", "500,000")]
    for i, name in enumerate([*names, "spare"]):
        limit = "10,000" if name == names[-1] else "300,000"
        card = ("--number", CARDS[i % len(CARDS)], "--expiry", "12/39", "--limit", limit)
        added.append(stage.run(name, "user", "add-card", *card))
    ok = all(o.status == 0 for o in [*outcomes.values(), *added])
    story.record(
        "group_terminals",
        f"A collector {labelled('collector', ids['collector'])} (with a wallet), {len(names)} "
        "members with cards — "
        f"{names[-1]}'s card has only a {krw(10_000)} limit — a spare friend, and the merchant.",
        ok,
        "every terminal registered and every source added (exit 0)",
        started,
        {name: {"status": o.status, **o.data} for name, o in outcomes.items()},
    )
    return ids


def _collect(
    story: Story, args: tuple[str, ...], joiners: list[str]
) -> tuple[Outcome, list[Outcome]]:
    waiting, tapping = story.stage.devices()
    collector = story.stage.start(
        "collector", "group", "collect", *args, "--timeout", "60", device=waiting
    )
    joins = [
        finish(
            story.stage.start(
                name, "group", "join", "--yes", "--timeout", TAP_TIMEOUT, device=tapping
            )
        )
        for name in joiners
    ]
    return finish(collector), joins


def _pay(story: Story, bill_id: str, total: int) -> tuple[Outcome, Outcome]:
    return story.stage.tap(
        ("merchant", "merchant", "charge", "--amount", str(total)),
        ("collector", "target", "pay", "--bill", bill_id),
    )


def _charged(story: Story, names: list[str]) -> dict[str, int]:
    out = {}
    for name in names:
        for source in story.stage.run(name, "user", "sources").data.get("sources", []):
            spent = source.get("outstanding")
            out[name] = spent if spent is not None else 500_000 - source["balance"]
    return out


def _bill_paid(story: Story, names: list[str], ids: dict[str, str], poor: str, total: int) -> None:
    started = time.monotonic()
    done, joins = _collect(story, ("--total", str(total), "--members", str(len(names))), names)
    bill = done.data.get("bill", {})
    bill_id = str(bill.get("bill_id", "b_missing"))
    story.record(
        "group_collect",
        f"The collector splits {krw(total)} equally ({krw(SHARE)} each, its own share "
        f"included); {len(names)} members tap in turn and each hands over a grant capped at "
        f"exactly {krw(SHARE)}, one use, for bill {bill_id} only.",
        done.status == 0 and bill.get("status") == "ready" and all(j.status == 0 for j in joins),
        "every member joined (exit 0)",
        started,
        {"collector": {"status": done.status, **done.data}},
    )
    everyone = ["collector", *names]
    started = time.monotonic()
    shop, payer = _pay(story, bill_id, total)
    failing = shop.data.get("message", "")
    grant_of_poor = next(
        (s["grant_id"] for s in bill.get("slots", []) if s["member"] == ids[poor]), "?"
    )
    untouched = _charged(story, everyone)
    story.record(
        "group_declined",
        f"The collector pays {krw(total)}: declined — {shop.data.get('decline_code')}: "
        f"{failing}. That is {poor}'s grant {grant_of_poor}; nobody was charged "
        f"({sum(untouched.values())} KRW moved).",
        shop.status == 3
        and payer.status == 3
        and shop.data.get("decline_code") == "limit_exceeded"
        and sum(untouched.values()) == 0,
        "limit_exceeded naming the poor member's share, nothing charged (exit 3)",
        started,
        {"merchant": {"status": shop.status, **shop.data}, "charged": untouched},
    )
    started = time.monotonic()
    dropped = story.stage.run("collector", "group", "drop", bill_id, ids[poor])
    again, joins = _collect(story, ("--bill", bill_id), ["spare"])
    story.record(
        "group_replace",
        f"The collector drops {labelled(poor, ids[poor])}; the spare friend taps in and takes "
        f"the {krw(SHARE)} share.",
        dropped.status == 0 and again.status == 0 and joins[0].status == 0,
        "member dropped and replaced (exit 0)",
        started,
        {"drop": dropped.data, "collect": again.data},
    )
    started = time.monotonic()
    shop, payer = _pay(story, bill_id, total)
    payers = ["collector", *names[:-1], "spare"]
    charged = _charged(story, [*payers, poor])
    story.record(
        "group_approved",
        f"The collector pays {krw(total)} again: {shop.data.get('status')} (payment "
        f"{shop.data.get('payment_id')}); each of {len(payers)} sources was charged "
        f"{krw(SHARE)}, {poor} nothing.",
        shop.status == 0
        and payer.status == 0
        and all(charged.get(n) == SHARE for n in payers)
        and charged.get(poor) == 0,
        "approved; every share charged exactly once",
        started,
        {"merchant": {"status": shop.status, **shop.data}, "charged": charged},
    )
