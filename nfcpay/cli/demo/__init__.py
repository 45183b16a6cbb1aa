"""``nfcpay demo``: the whole story on this machine, with the loopback reader.

Every terminal is a separate ``nfcpay`` process with its own home, exactly as on four
laptops: the demo only starts the bundled server (:mod:`.stage`), runs the CLI, and checks
each command's ``--json`` answer and exit status against what the story expects
(:mod:`.story`, :mod:`.group_story`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import click

from nfcpay.cli.demo.stage import Stage
from nfcpay.cli.demo.story import Step, run_story
from nfcpay.cli.output import CliContext


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
            from nfcpay.cli.demo.group_story import run_group_story

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
