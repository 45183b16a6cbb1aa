"""``nfcpay demo``: the whole story on this machine, with the loopback reader.

Every terminal is a separate ``nfcpay`` process with its own home, exactly as on four
laptops: the demo only starts the bundled server, runs the CLI, and checks each command's
``--json`` answer and exit status against what the story expects.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from nfcpay.cli.output import CliContext
from nfcpay.money import format_minor

TAP_TIMEOUT = "20"
SERVER_START_TIMEOUT = 30.0
CARD = "4111111111111111"

Json = dict[str, Any]


@dataclass
class Outcome:
    """One CLI process: its exit status and its --json document."""

    status: int
    data: Json
    stderr: str


@dataclass
class Step:
    name: str
    story: str
    ok: bool
    expected: str
    observed: Json = field(default_factory=dict)
    seconds: float = 0.0


def krw(minor: int) -> str:
    return format_minor(minor, "KRW")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


DEMO_FIELD = "demo"


class Stage:
    """The demo's directory, server process and the terminals' command runner."""

    def __init__(self, root: Path, *, virtual: bool = False) -> None:
        self.root = root
        self.server_url = ""
        self._server: subprocess.Popen[str] | None = None
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("NFCPAY_")}
        self._env["PYTHONUNBUFFERED"] = "1"
        self.virtual = virtual
        if virtual:  # the demo's own field, in its own directory
            (root / "run").mkdir(mode=0o700, parents=True, exist_ok=True)
            self._env["XDG_RUNTIME_DIR"] = str(root / "run")

    def devices(self) -> tuple[str, str]:
        """(waiting side's reader, tapping side's reader) for the next tap: one fresh
        loopback port, or a virtual RC-S380 waiting and a virtual ACR122U tapping."""
        if self.virtual:
            return f"virtual:rcs380@{DEMO_FIELD}", f"virtual:acr122u@{DEMO_FIELD}"
        device = f"loopback:{free_udp_port()}"
        return device, device

    def stop_field(self) -> None:
        if self.virtual:
            from nfcpay.transport.virtual.broker import stop_field

            stop_field(DEMO_FIELD, directory=self.root / "run" / "nfcpay-fields")

    def home(self, name: str) -> Path:
        return self.root / name

    def start_server(self) -> None:
        command = [sys.executable, "-m", "nfcpay", "server", "run"]
        command += ["--data-dir", str(self.root / "server"), "--port", "0"]
        self._server = subprocess.Popen(  # noqa: S603 - our own interpreter and args
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self._env,
        )
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        assert self._server.stdout is not None
        for line in self._server.stdout:
            if "listening on " in line:
                self.server_url = line.split("listening on ", 1)[1].split()[0]
                return
            if time.monotonic() > deadline:
                break
        raise click.ClickException("the bundled payment server did not start")

    def stop_server(self) -> None:
        if self._server is not None and self._server.poll() is None:
            self._server.terminate()
            self._server.wait(10)

    def start(self, name: str, *args: str, device: str | None = None) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "nfcpay", "--json", "--home", str(self.home(name))]
        command += ["--server", self.server_url]
        if device:
            command += ["--device", device]
        return subprocess.Popen(  # noqa: S603 - our own interpreter and args
            [*command, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self._env,
        )

    def run(self, name: str, *args: str) -> Outcome:
        return finish(self.start(name, *args))

    def tap(self, waiting: tuple[str, ...], tapping: tuple[str, ...]) -> tuple[Outcome, Outcome]:
        """Run a waiting terminal and a tapping one against each other."""
        waiting_device, tapping_device = self.devices()
        first = self.start(
            waiting[0], *waiting[1:], "--timeout", TAP_TIMEOUT, device=waiting_device
        )
        second = self.start(
            tapping[0], *tapping[1:], "--timeout", TAP_TIMEOUT, device=tapping_device
        )
        return finish(first), finish(second)


def finish(process: subprocess.Popen[str]) -> Outcome:
    stdout, stderr = process.communicate(timeout=60)
    try:
        data = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else {}
    except json.JSONDecodeError:
        data = {"unparsed": stdout[-400:]}
    return Outcome(process.returncode, data, stderr[-400:])


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
            "user": ("user", "Alice (card owner)"),
            "target": ("target", "Bob (pays for Alice)"),
            "merchant": ("merchant", "Corner Bistro"),
            "stranger": ("target", "Mallory (has a copy)"),
        }
        processes = {
            name: self.stage.start(name, "terminal", "init", "--role", role, "--label", label)
            for name, (role, label) in roles.items()
        }
        outcomes = {name: finish(process) for name, process in processes.items()}
        self.ids = {name: o.data.get("terminal_id", "?") for name, o in outcomes.items()}
        self.ids["merchant_id"] = outcomes["merchant"].data.get("merchant_id") or "?"
        ok = all(o.status == 0 and o.data.get("ok") for o in outcomes.values())
        self.record(
            "terminals",
            f"Four terminals register with the server: user {self.ids['user']}, target "
            f"{self.ids['target']}, merchant {self.ids['merchant_id']}, stranger "
            f"{self.ids['stranger']}.",
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
            ("user", "user", "give", "--amount", str(cap), "--uses", str(uses)),
            ("target", "target", "receive"),
        )
        grant = taker.data.get("grant", {})
        ok = giver.status == 0 and taker.status == 0 and grant.get("amount_cap") == cap
        self.record(
            name,
            f"Bob taps Alice's phone: she gives him grant {grant.get('grant_id')} worth "
            f"{krw(cap)} for {uses} use{'s' if uses > 1 else ''}, bound to his terminal.",
            ok,
            f"grant with cap {cap} received by the target (exit 0 on both sides)",
            started,
            {
                "user": {"status": giver.status, **giver.data},
                "target": {"status": taker.status, **taker.data},
            },
        )
        return str(grant.get("grant_id", "g_missing"))

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
    return story.steps


@click.command()
@click.option("--keep", is_flag=True, help="Keep the data directory and say how to inspect it.")
@click.option(
    "--group",
    "members",
    type=click.IntRange(2, 8),
    help="Run the group-payment story instead, with this many members.",
)
@click.option(
    "--readers",
    type=click.Choice(["loopback", "virtual"]),
    default="loopback",
    show_default=True,
    help="loopback: nfcpy's udp driver (fast); virtual: emulated chips behind nfcpy's real "
    "drivers, an RC-S380 on the waiting side of every tap and an ACR122U on the tapping side.",
)
@click.pass_obj
def demo(obj: CliContext, keep: bool, members: int | None, readers: str) -> None:
    """Run the whole story on this machine: a server, four terminals, the loopback reader
    (or virtual readers: --readers virtual).

    Exit status 0 only if every step ended as expected.
    """
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="nfcpay-demo-"))
    stage = Stage(root, virtual=readers == "virtual")
    say: Callable[[str], None] = (lambda _: None) if obj.as_json else click.echo
    try:
        say("Starting the payment server (SQLite in a throw-away directory) ...")
        stage.start_server()
        over = "virtual RC-S380 and ACR122U chips" if stage.virtual else "the loopback reader"
        say(f"Server at {stage.server_url}. Each terminal below is its own process, over {over}.\n")
        if members is None:
            steps = run_story(stage, say)
        else:
            from nfcpay.cli.demo_group import run_group_story

            steps = run_group_story(stage, say, members)
    finally:
        stage.stop_server()
        stage.stop_field()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    wall = round(time.monotonic() - started, 2)
    ok = all(step.ok for step in steps)
    data = {
        "ok": ok,
        "wall_seconds": wall,
        "data_dir": str(root) if keep else None,
        "steps": [vars(step) for step in steps],
    }
    obj.emit(data, lambda: _summary(ok, wall, root if keep else None, steps))
    if not ok:
        click.get_current_context().exit(1)


def _summary(ok: bool, wall: float, kept: Path | None, steps: Sequence[Step]) -> None:
    verdict = "Every step ended as expected" if ok else "Some steps did NOT end as expected"
    click.echo(f"\n{verdict} ({len(steps)} steps, {wall} s).")
    if kept is not None:
        click.echo(f"Kept {kept}:")
        click.echo(f"  server data   {kept / 'server'} (SQLite nfcpay.sqlite3, master key)")
        click.echo(f"  terminals     {kept}/user, target, merchant, stranger (one home each)")
        click.echo(f"  try           nfcpay --home {kept / 'target'} target wallet --offline")
        click.echo(f"                sqlite3 {kept / 'server' / 'nfcpay.sqlite3'} .tables")
        click.echo(
            f"  live again    nfcpay server run --data-dir {kept / 'server'} --port <the port "
            "above>, then any command with --home <terminal>"
        )
