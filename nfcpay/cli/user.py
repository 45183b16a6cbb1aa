"""``nfcpay user ...``: the card owner's terminal."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

import click

from nfcpay.cli.output import EXIT_DECLINED, CliContext, table
from nfcpay.cli.params import (
    AMOUNT,
    CARD_NUMBER,
    DURATION,
    EXPIRY,
    GRANT_ID,
    MERCHANT_ID,
    NOTIFICATION_ID,
    PER,
    POSITIVE_AMOUNT,
    PURPOSE,
    REGION,
    SOURCE_ID,
    TERMINAL_ID,
    TIME_ZONE,
)
from nfcpay.cli.terminal import (
    LiveStatus,
    amount_in,
    client_of,
    grant_lines,
    home_of,
    money_text,
    reader_of,
    tap_options,
)
from nfcpay.names import labelled

if TYPE_CHECKING:
    from nfcpay.money import Money
    from nfcpay.terminals.home import Identity
    from nfcpay.terminals.user import Confirmation, Given

#: The most uses a grant may have (the server's limit); an allowance's default.
MAX_USES = 1_000_000


@click.group()
def user() -> None:
    """Card owner: funding sources, grants for someone else, notifications.

    `give` WAITS for the target terminal's tap (the user's reader listens; a poll-only
    reader such as the ACR122U polls instead, see README "At the counter").
    """


def _source_line(source: dict[str, Any]) -> list[object]:
    currency = source["currency"]
    shown = source.get("masked") or source["kind"]
    return [
        source["source_id"],
        source["kind"],
        shown,
        source["status"],
        money_text(source.get("available"), currency),
    ]


def _emit_source(obj: CliContext, source: dict[str, Any]) -> None:
    obj.emit(
        {"ok": True, "source": source},
        lambda: click.echo(
            f"Added {source['kind']} {source['source_id']} "
            f"({source.get('masked') or source['kind']}), available "
            f"{money_text(source.get('available'), source['currency'])}"
        ),
    )


@user.command("add-card")
@click.option(
    "--number",
    type=CARD_NUMBER,
    required=True,
    help="The real card number; spaces and dashes are fine (it stays on the server).",
)
@click.option("--expiry", type=EXPIRY, required=True, help="The month the card expires.")
@click.option("--limit", "limit", type=AMOUNT, required=True, help="Credit limit.")
@click.pass_obj
def add_card(obj: CliContext, number: str, expiry: str, limit: str) -> None:
    """Register a card as a funding source."""
    home, identity = home_of(obj, "user", "target")
    with client_of(obj, home) as client:
        money = amount_in(limit, identity.currency)
        _emit_source(obj, client.add_card(number, expiry, money.minor, money.currency))


@user.command("add-wallet")
@click.option("--balance", type=AMOUNT, required=True)
@click.pass_obj
def add_wallet(obj: CliContext, balance: str) -> None:
    """Register a prepaid wallet as a funding source."""
    _add_balance_source(obj, balance, "wallet")


@user.command("add-bank")
@click.option("--balance", type=AMOUNT, required=True)
@click.pass_obj
def add_bank(obj: CliContext, balance: str) -> None:
    """Register a bank account as a funding source."""
    _add_balance_source(obj, balance, "bank")


def _add_balance_source(obj: CliContext, balance: str, kind: str) -> None:
    """Register a wallet or bank account, which the sandbox issuer knows by its balance."""
    home, identity = home_of(obj, "user", "target")
    with client_of(obj, home) as client:
        money = amount_in(balance, identity.currency)
        add = client.add_wallet if kind == "wallet" else client.add_bank
        _emit_source(obj, add(money.minor, money.currency))


@user.command()
@click.pass_obj
def sources(obj: CliContext) -> None:
    """List this terminal's funding sources."""
    home, _ = home_of(obj, "user", "target")
    with client_of(obj, home) as client:
        found = client.list_sources()
    headers = ["source", "kind", "card", "status", "available"]
    obj.emit({"ok": True, "sources": found}, table(headers, [_source_line(s) for s in found]))


def rights_options(command: Any) -> Any:
    """The usage-rights options shared by `give` and `issue`."""
    options = [
        click.option(
            "--source",
            "source_id",
            type=SOURCE_ID,
            help="Funding source (default: the first active).",
        ),
        click.option("--amount", type=POSITIVE_AMOUNT, help="Amount cap over all uses."),
        click.option(
            "--uses",
            type=click.IntRange(1, MAX_USES),
            help="How many payments it makes at most (default 1; with --per, no limit).",
        ),
        click.option("--per-use", type=POSITIVE_AMOUNT, help="Cap per use."),
        click.option("--expires", type=DURATION, help="Validity, e.g. 2h, 15m, 1d."),
        click.option(
            "--purpose", "purposes", type=PURPOSE, multiple=True, help="Allowed category (repeat)."
        ),
        click.option(
            "--region", "regions", type=REGION, multiple=True, help="Allowed region (repeat)."
        ),
        click.option(
            "--merchant",
            "merchants",
            type=MERCHANT_ID,
            multiple=True,
            help="Allowed merchant m_… (repeat).",
        ),
        click.option(
            "--per",
            type=PER,
            help="An allowance that renews: at most AMOUNT per day, week (from Monday) or "
            "calendar month, e.g. day:10,000; with it, --uses defaults to no limit.",
        ),
        click.option(
            "--time-zone",
            type=TIME_ZONE,
            help="IANA zone the --per allowance counts in (default: the one given at "
            "`terminal init`).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _refuse(name: str, message: str) -> NoReturn:
    """A usage error naming the option whose parameter is called ``name``."""
    ctx = click.get_current_context()
    param = next(p for p in ctx.command.params if p.name == name)
    raise click.BadParameter(message, ctx=ctx, param=param)


def _allowance(identity: Identity, cap: Money, params: dict[str, Any]) -> Any:
    """The ``--per`` allowance in ``--time-zone`` (default: the zone declared at ``terminal
    init``, else — a home made before allowances — the machine's, else UTC), or None."""
    from nfcpay.allowance import FALLBACK_ZONE, machine_zone
    from nfcpay.terminals.user import Allowance

    if params["per"] is None:
        if params["time_zone"] is not None:
            _refuse("time_zone", "a time zone goes with an allowance (--per day:AMOUNT)")
        return None
    period, text = params["per"]
    each = amount_in(text, cap.currency)
    if each.minor > cap.minor:
        _refuse("per", f"{each} a {period} is more than the whole grant, {cap} (--amount)")
    zone = params["time_zone"] or identity.time_zone or machine_zone(os.environ) or FALLBACK_ZONE
    return Allowance(period, each.minor, zone)


def _rights(identity: Identity, params: dict[str, Any]) -> Any:
    from nfcpay.records.grant import MAX_LISTED
    from nfcpay.terminals.user import Rights

    currency = identity.currency

    if params["amount"] is None:
        raise click.UsageError("a new grant needs --amount (its cap)")
    for name in ("purposes", "regions", "merchants"):
        if len(params[name]) > MAX_LISTED:
            _refuse(name, f"at most {MAX_LISTED} per grant, not {len(params[name])}")
    cap = amount_in(params["amount"], currency)
    per_use = amount_in(params["per_use"], currency) if params["per_use"] else None
    if per_use is not None and per_use.minor > cap.minor:
        _refuse("per_use", f"one use cannot take {per_use}: the whole grant is {cap} (--amount)")
    expires: timedelta | None = params["expires"]
    allowance = _allowance(identity, cap, params)
    uses = params["uses"] or (1 if allowance is None else MAX_USES)
    return Rights(
        amount_cap=cap.minor,
        max_uses=uses,
        allowance=allowance,
        per_use_cap=per_use.minor if per_use is not None else None,
        expires_in=expires,
        purposes=tuple(params["purposes"]),
        regions=tuple(params["regions"]),
        merchants=tuple(params["merchants"]),
    )


def _allowed(grant: dict[str, Any]) -> str:
    """The terminals a grant (server view) is bound to, as people read them."""
    return ", ".join(labelled(a["label"], a["terminal_id"]) for a in grant["allowed"])


def describe_grant(grant: dict[str, Any]) -> str:
    """One paragraph on what a grant (server view) allows."""
    rights, currency = grant["rights"], grant["currency"]
    return grant_lines(
        f"Grant {click.style(grant['grant_id'], bold=True)} "
        f"(virtual card …{grant['virtual_card_number'][-4:]}) for {_allowed(grant)}",
        rights,
        currency=currency,
        remaining=f"{money_text(grant['remaining_amount'], currency)}, uses left "
        f"{grant['remaining_uses']}/{rights['max_uses']}, status {grant['status']}",
    )


#: Seconds the owner has to confirm who tapped (the server allows 120 from the tap).
CONFIRM_TIMEOUT_S = 60.0


def ask_owner(given: Given) -> Confirmation:
    """Show the owner who tapped and ask whether that is the person they meant to give to."""
    from nfcpay.cli.ask import yes_within
    from nfcpay.terminals.user import Confirmation

    tapped = given.tapped
    if tapped is None:
        raise ValueError("only a grant handed to whoever tapped is confirmed")
    click.echo(
        f"\nTerminal {click.style(tapped.label, bold=True)} ({tapped.terminal_id}) tapped, "
        f"key fingerprint {click.style(tapped.shown_fingerprint, bold=True)}.\n"
        "Compare it with the fingerprint on the target's screen: labels are chosen by their "
        "owners, the fingerprint is what proves which terminal tapped.",
        err=True,
    )
    answer = yes_within(
        f"Confirm grant {given.grant['grant_id']} for this terminal?", CONFIRM_TIMEOUT_S
    )
    if answer is None:
        return Confirmation.TIMED_OUT
    return Confirmation.CONFIRMED if answer else Confirmation.DECLINED


def _given_text(given: Given) -> str:
    """What became of a hand-over, for people."""
    grant_id, tapped = given.grant["grant_id"], given.tapped
    holder = labelled(tapped.label, tapped.terminal_id) if tapped else _allowed(given.grant)
    if given.confirmation == "declined":
        return f"Not confirmed: grant {grant_id} is revoked; {holder} cannot pay with it."
    if given.confirmation == "timed_out":
        return f"No answer in time: grant {grant_id} is revoked; {holder} cannot pay with it."
    confirmed = ", confirmed" if given.confirmation == "confirmed" else ""
    return f"Handed over to {holder}{confirmed}.\n{describe_grant(given.grant)}"


@user.command()
@rights_options
@click.option(
    "--to",
    type=TERMINAL_ID,
    help="Bind the grant ahead to this target terminal id (default: whoever taps, confirmed "
    "by you after the tap).",
)
@click.option(
    "--grant",
    "grant_id",
    type=GRANT_ID,
    help="Hand over this grant, issued earlier with `issue`.",
)
@click.option(
    "--yes",
    "assume_yes",
    is_flag=True,
    help="Confirm whoever tapped without asking (scripts; a person should compare the "
    "fingerprints instead).",
)
@tap_options
@click.pass_obj
def give(
    obj: CliContext,
    /,
    to: str | None,
    grant_id: str | None,
    assume_yes: bool,
    timeout: float,
    listen: bool | None,
    source_id: str | None,
    **params: Any,
) -> None:
    """Wait for the target's tap; issue a grant bound to it and hand it over in that tap.

    After the tap this shows the label and key fingerprint of the terminal that tapped;
    compare the fingerprint with the one on the target's screen (`target receive` shows
    it) and confirm. Until you do, the grant pays nothing; no, or no answer within 60 s,
    revokes it (exit 3). Labels are chosen by their owners: only the fingerprint tells a
    relay from your friend. `--to` binds the grant ahead instead (nothing to confirm).

    Two readers that can only poll (two ACR122Us) meet through an NFC sticker instead:
    `--carrier tag --to TARGET` writes the grant, bound ahead, to the next tag held to the
    reader; the target reads it with `target receive --carrier tag`.
    """
    from nfcpay.terminals.user import always_confirm, confirm_given, give_by_tag
    from nfcpay.terminals.user import give as give_grant

    home, identity = home_of(obj, "user")
    what = grant_id or _rights(identity, params)
    hand_over = give_by_tag if obj.carrier == "tag" else give_grant
    with client_of(obj, home) as client:
        with reader_of(obj, listen, tag_ok=True) as reader, LiveStatus(obj) as live:
            given = hand_over(
                home, client, reader, what, source_id=source_id, to=to, timeout=timeout, status=live
            )
        given = confirm_given(home, client, given, always_confirm if assume_yes else ask_owner)
    obj.emit(given.to_json(), lambda: click.echo(_given_text(given)))
    if not given.ok:
        click.get_current_context().exit(EXIT_DECLINED)


@user.command()
@rights_options
@click.option(
    "--to", type=TERMINAL_ID, required=True, help="The target terminal id the grant is bound to."
)
@click.pass_obj
def issue(obj: CliContext, /, to: str, source_id: str | None, **params: Any) -> None:
    """Issue a grant ahead of time (hand it over later with `give --grant ID`)."""
    from nfcpay.terminals.user import issue as issue_grant

    home, identity = home_of(obj, "user")
    with client_of(obj, home) as client:
        grant = issue_grant(
            home, client, to=to, rights=_rights(identity, params), source_id=source_id
        )
    obj.emit({"ok": True, "grant": grant}, lambda: click.echo(describe_grant(grant)))


@user.command()
@rights_options
@click.option(
    "--to",
    type=TERMINAL_ID,
    help="The target terminal id to send the grant to (as `terminal show` prints it there).",
)
@click.option(
    "--grant",
    "grant_id",
    type=GRANT_ID,
    help="Send this grant, issued earlier with `issue` (default: its own target).",
)
@click.pass_obj
def send(
    obj: CliContext, /, to: str | None, grant_id: str | None, source_id: str | None, **params: Any
) -> None:
    """Send a grant to a target terminal through the server: no tap, no reader, from
    anywhere. The server keeps it, encrypted, for that terminal alone; the target fetches
    it with `target receive --remote` and then pays at the counter as with a tapped grant.

    A new grant is issued bound to --to (with the usage-rights options); --grant sends one
    issued earlier. You are notified (`user notifications`) once the target has it;
    `user revoke` before that withdraws it from the server too.
    """
    from nfcpay.terminals.remote import send as send_grant

    home, identity = home_of(obj, "user")
    if grant_id is None and to is None:
        raise click.UsageError("name the target terminal with --to (or send a grant with --grant)")
    what = grant_id or _rights(identity, params)
    with client_of(obj, home) as client:
        sent = send_grant(home, client, what, to=to, source_id=source_id)
    target = sent.delivery["to"]
    obj.emit(
        sent.to_json(),
        lambda: click.echo(
            f"Sent to {labelled(target['label'], target['terminal_id'])} through the server; "
            f"it waits there until that terminal fetches it (`target receive --remote`).\n"
            f"{describe_grant(sent.grant)}"
        ),
    )


@user.command()
@click.pass_obj
def grants(obj: CliContext) -> None:
    """Grants this terminal issued, with what remains of each."""
    home, _ = home_of(obj, "user")
    with client_of(obj, home) as client:
        found = client.list_grants()
    rows = [
        [
            g["grant_id"],
            _allowed(g),
            money_text(g["rights"]["amount_cap"], g["currency"]),
            money_text(g["remaining_amount"], g["currency"]),
            f"{g['remaining_uses']}/{g['rights']['max_uses']}",
            _allowance_left(g),
            g["status"],
        ]
        for g in found
    ]
    headers = ["grant", "for", "cap", "remaining", "uses", "allowance", "status"]
    obj.emit({"ok": True, "grants": found}, table(headers, rows))


def _allowance_left(grant: dict[str, Any]) -> str:
    """What is left of a grant's allowance this interval (``4,000 of 10,000 KRW a day``), or
    ``-`` for a grant without one."""
    allowance = grant["rights"].get("allowance")
    if not allowance:
        return "-"
    left = money_text(grant["allowance_left"], grant["currency"])
    each = money_text(allowance["amount"], grant["currency"])
    return f"{left} of {each} a {allowance['period']}"


@user.command()
@click.argument("grant_ids", type=GRANT_ID, nargs=-1, required=True)
@click.pass_obj
def revoke(obj: CliContext, grant_ids: tuple[str, ...]) -> None:
    """Revoke grants: they are declined from now on."""
    from nfcpay.terminals.user import revoke as revoke_grants

    home, _ = home_of(obj, "user")
    with client_of(obj, home) as client:
        revoked = revoke_grants(client, grant_ids)
    obj.emit(
        {"ok": True, "grants": revoked},
        "\n".join(f"Revoked {g['grant_id']} (status {g['status']})." for g in revoked),
    )


def _notification_line(item: dict[str, Any]) -> str:
    amount = item.get("amount")
    money = f" {money_text(amount, item['currency'])}" if amount is not None else ""
    return f"{item['created_at']}  {item['kind']:<20}{money}  {item['message']}"


@user.command()
@click.option("--follow", is_flag=True, help="Keep waiting for new ones (Ctrl-C to stop).")
@click.option("--after", type=NOTIFICATION_ID, help="Only notifications newer than this id.")
@click.pass_obj
def notifications(obj: CliContext, follow: bool, after: str | None) -> None:
    """What happened to your grants: uses, declines, attempts from other terminals."""
    from nfcpay.terminals.user import follow_notifications

    home, _ = home_of(obj, "user")
    with client_of(obj, home) as client:
        if not follow:
            found = client.notifications(after=after)
            lines = "\n".join(map(_notification_line, found)) or "No notifications."
            obj.emit({"ok": True, "notifications": found}, lines)
            return
        obj.status("Following notifications; Ctrl-C to stop.")
        for item in follow_notifications(client, after):
            obj.emit(item, _notification_line(item))
