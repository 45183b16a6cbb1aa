"""``nfcpay terminal init|show``, and what the role commands share: home, client, reader,
tap options and the live status line shown while waiting for a tap."""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from nfcpay.cli.output import CliContext
from nfcpay.cli.params import (
    CATEGORIES,
    CURRENCY,
    LABEL,
    MERCHANT_NAME,
    REGION,
    SETTLEMENT_ACCOUNT,
    TIME_ZONE,
    distinct_codes,
    to_money,
)
from nfcpay.client import PaymentClient
from nfcpay.errors import ConfigError, MoneyError
from nfcpay.money import DEFAULT_CURRENCY, Money, format_minor
from nfcpay.terminals.home import ROLES, Identity, TerminalHome

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_TAP_TIMEOUT = 60.0


def home_of(obj: CliContext, *roles: str) -> tuple[TerminalHome, Identity]:
    """This terminal's home and identity, refusing a terminal of another role."""
    home = TerminalHome(obj.home)
    return home, home.require_role(*roles) if roles else home.identity()


def client_of(obj: CliContext, home: TerminalHome) -> PaymentClient:
    from nfcpay.terminals.account import connect

    return connect(home, obj.server_url, verify=obj.ca)


def amount_in(text: str, currency: str) -> Money:
    """An AMOUNT option's text in this terminal's currency; a mismatch is a usage error."""
    try:
        return to_money(text, currency)
    except MoneyError as exc:
        raise click.UsageError(exc.message) from None


def money_text(minor: int | None, currency: str) -> str:
    return "-" if minor is None else format_minor(minor, currency)


def grant_lines(header: str, rights: dict[str, Any], *, currency: str, remaining: str) -> str:
    """A grant's usage rights as an indented paragraph under ``header``.

    ``rights`` holds amount_cap, max_uses and the optional per_use_cap, valid_until,
    purposes, regions, merchants and the allowance (the server's ``allowance`` object, or an
    NFC record's ``allowance_period``, ``allowance_amount`` and ``time_zone``), whether it
    comes from the server or an NFC record.
    """
    lines = [
        header,
        f"  cap {money_text(rights['amount_cap'], currency)}, remaining {remaining}",
    ]
    if rights.get("per_use_cap"):
        lines.append(f"  per use at most {money_text(rights['per_use_cap'], currency)}")
    allowance = rights.get("allowance") or {
        "period": rights.get("allowance_period"),
        "amount": rights.get("allowance_amount"),
        "time_zone": rights.get("time_zone"),
    }
    if allowance["period"]:
        lines.append(
            f"  allowance {money_text(allowance['amount'], currency)} a {allowance['period']}, "
            f"counted in {allowance['time_zone']}"
        )
    if rights.get("valid_until"):
        lines.append(f"  valid until {rights['valid_until']}")
    for name in ("purposes", "regions", "merchants"):
        if rights.get(name):
            lines.append(f"  {name}: {', '.join(rights[name])}")
    return "\n".join(lines)


TAP_CARRIERS = ("auto", "llcp", "tt3", "tag")


def _remember(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def remember(ctx: click.Context, _: click.Parameter, value: Any) -> Any:
        setattr(ctx.obj, name, value)
        return value

    return remember


def trace_options(command: F) -> F:
    """``--trace FILE`` and ``--trace-secrets`` for every command that opens a reader (read
    from ``obj`` by :func:`traced`)."""
    command = click.option(
        "--trace-secrets",
        is_flag=True,
        expose_value=False,
        callback=_remember("trace_secrets"),
        help="Keep usage-auth values and signatures in the --trace file (never send it on).",
    )(command)
    return click.option(
        "--trace",
        type=click.Path(dir_okay=False, writable=True, path_type=Path),
        expose_value=False,
        callback=_remember("trace"),
        help="Record every frame between nfcpy's driver and the reader chip, with timestamps, "
        "to this file (JSON Lines; usage-auth values and signatures are masked). Send it "
        "with a bug report: it replays against the emulated chip.",
    )(command)


def traced(obj: CliContext, reader: Any, *, suffix: str = "") -> None:
    """Start ``--trace`` on an opened reader (a second reader's file gets ``suffix``)."""
    if obj.trace is None:
        return
    from nfcpay.records.message import secrets_in
    from nfcpay.transport.trace import TraceRecorder

    path = obj.trace.with_stem(obj.trace.stem + suffix) if suffix else obj.trace
    recorder = TraceRecorder(path, keep_secrets=obj.trace_secrets, secrets_of=secrets_in)
    recorder.attach(
        reader.clf,
        device=reader.path,
        profile=reader.profile.id,
        tags=reader.field_tags(),
    )
    reader.recorder = recorder
    if obj.trace_secrets:  # said even with --json: it is about a file on disk
        click.echo(
            f"Warning: {path} will hold usage-auth values and signatures in clear; "
            "anyone with the file can see them. Do not send it on.",
            err=True,
        )


def tap_options(command: F) -> F:
    """``--timeout``, ``--listen/--poll``, ``--carrier`` and ``--trace`` for every command
    that waits for or makes a tap (read from ``obj`` by :func:`reader_of`)."""
    command = trace_options(command)
    command = click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=DEFAULT_TAP_TIMEOUT,
        show_default=True,
        help="Seconds to wait for the other terminal's tap.",
    )(command)
    command = click.option(
        "--carrier",
        type=click.Choice(TAP_CARRIERS),
        default="auto",
        show_default=True,
        expose_value=False,
        callback=_remember("carrier"),
        help="How the two readers talk: llcp (peer to peer), tt3 (one reader plays a FeliCa "
        "card, for flaky peer-to-peer links such as the ACR122U's), tag (an NFC sticker "
        "passed between two readers that can only poll: `user give --to` / `target receive`, "
        "`group collect` / `group join`), auto (what this reader's profile prefers).",
    )(command)
    return click.option(
        "--listen/--poll",
        "listen",
        default=None,
        help="Override the reader's role for this tap (default: the waiting side listens, "
        "the tapping side polls; a reader that cannot listen always polls).",
    )(command)


def quiet_nfcpy(obj: CliContext) -> None:
    """nfcpy pins its logger to INFO at import; only -vv should show its chatter."""
    logging.getLogger("nfc").setLevel(logging.DEBUG if obj.verbose >= 2 else logging.WARNING)


@contextmanager
def reader_of(obj: CliContext, listen: bool | None, *, tag_ok: bool = False) -> Iterator[Any]:
    """Open the --device reader (imports nfcpy only now), set to this tap's --carrier.

    ``tag_ok``: the command hands over through a sticker when ``--carrier tag`` (giving a
    grant, joining a bill); paying and charging need a live link and refuse it.
    """
    if obj.carrier == "tag" and not tag_ok:
        raise click.UsageError(
            "--carrier tag passes a grant on a sticker (`user give --to` / `target receive`, "
            "`group collect` / `group join`); this command needs an answer within the tap: "
            "use llcp or tt3"
        )
    from nfcpay.transport.reader import open_reader
    from nfcpay.transport.roles import Mode

    mode: Mode = "auto" if listen is None else ("listen" if listen else "poll")
    quiet_nfcpy(obj)
    try:
        reader = open_reader(
            obj.device, mode=mode, holder=command_name(), runtime_dir=obj.runtime_dir
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    with reader:
        traced(obj, reader)
        reader.settle_auto_mode()
        if obj.carrier in ("llcp", "tt3"):
            reader.carrier = "llcp" if obj.carrier == "llcp" else "tt3"
        yield reader


def command_name() -> str:
    """The running command as people type it, e.g. ``nfcpay merchant charge``."""
    ctx: click.Context | None = click.get_current_context()
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["nfcpay", *reversed(names)])


class LiveStatus:
    """The status line on stderr while waiting: a spinner and the seconds waited on a TTY,
    plain lines otherwise, nothing with --json. Call it with each new message."""

    def __init__(self, obj: CliContext) -> None:
        self._enabled = not obj.as_json
        self._live = self._enabled and sys.stderr.isatty()
        self._message = ""
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __call__(self, message: str) -> None:
        if not self._enabled:
            return
        with self._lock:
            if self._live and self._message:
                self._clear()
                click.echo(f"  {self._message}", err=True)
            self._message = message
            self._started = time.monotonic()
        if not self._live:
            click.echo(click.style(message, dim=True), err=True)
        elif self._thread is None:
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()

    def _spin(self) -> None:
        for frame in itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"):
            if self._stop.wait(0.1):
                return
            with self._lock:
                waited = time.monotonic() - self._started
                line = f"{frame} {self._message} — {waited:4.1f}s, Ctrl-C to stop"
                click.echo("\r\x1b[2K" + click.style(line, fg="cyan"), err=True, nl=False)

    def _clear(self) -> None:
        click.echo("\r\x1b[2K", err=True, nl=False)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No redrawing while the person answers a prompt (between two taps): the current
        message becomes a plain line, and the spinner waits until the prompt is answered."""
        with self._lock:
            if self._live and self._message:
                self._clear()
                click.echo(f"  {self._message}", err=True)
                self._message = ""
            yield

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            with self._lock:
                self._clear()

    def __enter__(self) -> LiveStatus:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@click.group()
def terminal() -> None:
    """Create and inspect this terminal (its key, id and role)."""


@terminal.command()
@click.option("--role", type=click.Choice(ROLES), required=True, help="What this terminal does.")
@click.option(
    "--label", type=LABEL, required=True, help="A name people recognise (not an identity)."
)
@click.option("--currency", type=CURRENCY, default=DEFAULT_CURRENCY, show_default=True)
@click.option("--merchant-name", type=MERCHANT_NAME, help="Merchants: the shop name on receipts.")
@click.option(
    "--category",
    "categories",
    type=CATEGORIES,
    multiple=True,
    default=["5812"],
    show_default=True,
    help="Merchants: the categories (MCC-like codes) payments here may be for, the first the "
    "primary one; repeat or separate with commas. Changed later only with `nfcpay merchant "
    "categories set`.",
)
@click.option(
    "--region", type=REGION, default="KR-11", show_default=True, help="Merchants: region code."
)
@click.option(
    "--settlement-account", type=SETTLEMENT_ACCOUNT, default="SANDBOX-0001", show_default=True
)
@click.option(
    "--time-zone",
    type=TIME_ZONE,
    help="IANA zone the allowances of grants issued here count in, e.g. Asia/Seoul "
    "(default: this machine's, else UTC).",
)
@click.pass_obj
def init(
    obj: CliContext,
    role: str,
    label: str,
    currency: str,
    merchant_name: str | None,
    categories: tuple[tuple[str, ...], ...],
    region: str,
    settlement_account: str,
    time_zone: str | None,
) -> None:
    """Create this terminal's key and register it with the payment server."""
    from nfcpay.terminals.account import init_terminal

    time_zone = time_zone or _machine_zone(obj)

    if not obj.server_url:
        raise ConfigError("terminal init needs the payment server: --server URL or NFCPAY_SERVER")
    merchant = None
    if role == "merchant":
        merchant = {
            "name": merchant_name or label,
            "categories": checked_categories(categories),
            "region": region,
            "settlement_account": settlement_account,
        }
    identity, answer = init_terminal(
        TerminalHome(obj.home),
        role=role,
        label=label,
        server_url=obj.server_url,
        currency=currency.upper(),
        merchant=merchant,
        verify=obj.ca,
        time_zone=time_zone,
    )
    data = {"ok": True, "home": str(obj.home), **vars(identity)}
    data["key_fingerprint"] = answer.get("public_key_fingerprint")
    obj.emit(data, lambda: _show(obj, identity, "Registered"))


def _machine_zone(obj: CliContext) -> str:
    """This machine's zone, or UTC (said on stderr) when it cannot be named."""
    from nfcpay.allowance import FALLBACK_ZONE, machine_zone

    found = machine_zone(os.environ)
    if found is None:
        obj.status(
            f"This machine's time zone has no IANA name; allowances count in {FALLBACK_ZONE} "
            "(choose with --time-zone)."
        )
    return found or FALLBACK_ZONE


def checked_categories(groups: tuple[tuple[str, ...], ...], name: str = "categories") -> list[str]:
    """The categories of the current command's repeated parameter ``name`` (an option or an
    argument of comma lists); a usage error naming it if one category is named twice."""
    try:
        return distinct_codes(groups, "category")
    except ValueError as exc:
        raise bad_value(name, str(exc)) from None


def bad_value(name: str, message: str) -> click.BadParameter:
    """The usage error for the current command's parameter ``name`` (so ``--json`` names it
    in ``field``)."""
    ctx = click.get_current_context()
    param = next(p for p in ctx.command.params if p.name == name)
    return click.BadParameter(message, ctx=ctx, param=param)


@terminal.command()
@click.pass_obj
def show(obj: CliContext) -> None:
    """Show this terminal's id, role, server and currency."""
    home, identity = home_of(obj)
    obj.emit({"ok": True, "home": str(home.path), **vars(identity)}, lambda: _show(obj, identity))


def _show(obj: CliContext, identity: Identity, verb: str = "Terminal") -> None:
    click.echo(f"{verb} {click.style(identity.terminal_id, bold=True)} ({identity.role})")
    click.echo(f"  label     {identity.label}")
    if identity.merchant_id:
        click.echo(f"  merchant  {identity.merchant_id}")
    if identity.categories:
        click.echo(f"  categories {', '.join(identity.categories)} (primary first)")
    click.echo(f"  server    {identity.server_url}")
    click.echo(f"  currency  {identity.currency}")
    if identity.time_zone:
        click.echo(f"  time zone {identity.time_zone} (allowances count in it)")
    click.echo(f"  home      {obj.home}")
