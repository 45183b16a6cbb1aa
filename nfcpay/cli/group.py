"""``nfcpay group ...``: split a bill among members, each paying their share from their own
card, and pay it at the counter in one atomic authorization.

The collector (a target terminal) WAITS in `group collect`; each member (a user terminal)
TAPS it with `group join`. The collector then pays with `nfcpay target pay --bill ID`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from nfcpay.cli.output import EXIT_DECLINED, CliContext, table
from nfcpay.cli.params import AMOUNT, DURATION
from nfcpay.cli.terminal import (
    LiveStatus,
    amount_in,
    client_of,
    home_of,
    money_text,
    reader_of,
    tap_options,
)
from nfcpay.errors import ApiError, MoneyError
from nfcpay.names import labelled

if TYPE_CHECKING:
    from nfcpay.terminals.home import TerminalHome


@click.group()
def group() -> None:
    """Group payment: collect members' shares over NFC, then pay the whole bill at once.

    A new bill is opened with the payment server, which picks its id and takes a payment
    for it only from the collector's terminal.

    \b
    collector:  nfcpay group collect --total 100,000 --members 3
    members:    nfcpay group join [--max 40,000]          (each taps the collector)
    collector:  nfcpay target pay --bill b_… --own-source src_…

    \b
    Two readers that can only poll (two ACR122Us) pass a sticker back and forth instead:
    collector:  nfcpay group collect --carrier tag --total 100,000 --members 3
    member:     nfcpay group join --carrier tag        (the sticker's request → a share)
    collector:  nfcpay group collect --carrier tag --bill b_…   (takes it, asks for the next)
    """


def _plan(total: int, share: int | None, shares: list[int] | None, members: int | None) -> Any:
    from nfcpay import split

    try:
        if shares is not None:
            if members is not None and members != len(shares):
                raise click.UsageError(f"--members {members} but {len(shares)} --shares given")
            return split.plan_explicit(total, shares)
        if members is None:
            raise click.UsageError("say how many members join: --members N (or --shares a,b,…)")
        if share is not None:
            return split.plan_fixed(total, share, members)
        return split.plan_equal(total, members)
    except MoneyError as exc:
        raise click.UsageError(exc.message) from None


@group.command()
@click.option("--total", type=AMOUNT, help="The bill total (a new bill).")
@click.option("--share", type=AMOUNT, help="Every member pays this; you pay the rest.")
@click.option("--shares", help="Each member's share, comma separated: 30000,25000,…")
@click.option(
    "--members",
    type=click.IntRange(0, 8),
    help="How many others join (default: equal split with you).",
)
@click.option(
    "--expires",
    type=DURATION,
    default="15m",
    show_default=True,
    help="How long the members' grants stay valid.",
)
@click.option(
    "--mode",
    type=click.Choice(["exact", "remainder"]),
    default="exact",
    show_default=True,
    help="exact: the shares must add up to what the merchant charges; remainder: your "
    "source pays whatever the members' shares leave.",
)
@click.option(
    "--bill", "bill_id", help="Go on collecting for this existing bill (e.g. after `group drop`)."
)
@tap_options
@click.pass_obj
def collect(
    obj: CliContext,
    total: str | None,
    share: str | None,
    shares: str | None,
    members: int | None,
    expires: timedelta,
    mode: str,
    bill_id: str | None,
    timeout: float,
    listen: bool | None,
) -> None:
    """Start (or continue) a bill and wait for each member's tap until all have joined.

    A new bill is opened with the payment server first (it needs the server): the server
    picks the bill's id and takes a payment for it only from this terminal.

    With --carrier tag, each run is one visit of the bill's sticker: it takes the share a
    member wrote on it and leaves the request for the next share (or wipes it when the bill
    is complete). Run it again with --bill for each visit.
    """
    from nfcpay.terminals import bill as bills
    from nfcpay.terminals.collector import collect as collect_taps
    from nfcpay.terminals.collector import require_bill

    home, identity = home_of(obj, "target")
    if bill_id is not None:
        if total or share or shares:
            raise click.UsageError("--bill continues a bill: no --total/--share/--shares")
        bill = require_bill(home, bill_id)
    else:
        if total is None:
            raise click.UsageError("a new bill needs --total (or --bill ID to continue one)")
        if share and shares:
            raise click.UsageError("--share and --shares do not go together")
        currency = identity.currency
        parsed = None
        if shares is not None:
            parsed = [amount_in(text, currency).minor for text in shares.split(",") if text]
        split = _plan(
            amount_in(total, currency).minor,
            amount_in(share, currency).minor if share else None,
            parsed,
            members,
        )
        with client_of(obj, home) as client:
            bill = bills.open_bill(home, identity, client, split, mode=mode, expires_in=expires)
        obj.status(
            f"Bill {bill['bill_id']}: {money_text(bill['total'], bill['currency'])}, your share "
            f"{money_text(bill['collector_share'], bill['currency'])} ({mode} mode)."
        )
    gather = collect_taps
    if obj.carrier == "tag":
        from nfcpay.terminals.bill_sticker import collect_visit as gather
    with reader_of(obj, listen, tag_ok=True) as reader, LiveStatus(obj) as live:
        result = gather(home, reader, bill["bill_id"], timeout=timeout, status=live)
    names = _member_names(obj, home, result.bill, ask=True)
    obj.emit(result.to_json(), lambda: _show_bill(result.bill, result.events, names))
    if not result.ok:
        click.get_current_context().exit(EXIT_DECLINED)


@group.command()
@click.option(
    "--source", "source_id", help="Funding source for your share (default: the first active)."
)
@click.option("--max", "maximum", type=AMOUNT, help="Refuse a share over this amount.")
@click.option(
    "--confirm/--yes",
    "confirm",
    default=True,
    show_default=True,
    help="Ask before paying the share (--yes: do not ask).",
)
@click.option(
    "--purpose", "purposes", multiple=True, help="Allowed category for your grant (repeat)."
)
@click.option("--merchant", "merchants", multiple=True, help="Allowed merchant m_… (repeat).")
@tap_options
@click.pass_obj
def join(
    obj: CliContext,
    source_id: str | None,
    maximum: str | None,
    confirm: bool,
    purposes: tuple[str, ...],
    merchants: tuple[str, ...],
    timeout: float,
    listen: bool | None,
) -> None:
    """Tap the collector, see your share, and pay it with a grant for exactly that share.

    With --carrier tag, hold the collector's sticker instead: your share replaces the
    request on it (asked first, the sticker is read once, then held again to pay).
    """
    from nfcpay.records import SplitRequestRecord
    from nfcpay.terminals.member import join as join_bill

    home, identity = home_of(obj, "user")
    cap = amount_in(maximum, identity.currency).minor if maximum else None

    def ask(request: SplitRequestRecord) -> bool:
        money = money_text(request.amount, request.currency)
        return click.confirm(
            f"\nPay {money} of bill {request.bill_id} collected by {request.collector_terminal}?",
            default=True,
            err=True,
        )

    if obj.carrier == "tag":
        from nfcpay.terminals.bill_sticker import join_by_sticker as join_bill
    with (
        client_of(obj, home) as client,
        reader_of(obj, listen, tag_ok=True) as reader,
        LiveStatus(obj) as live,
    ):
        joined = join_bill(
            home,
            client,
            reader,
            source_id=source_id,
            maximum=cap,
            confirm=ask if confirm and not obj.as_json else None,
            purposes=purposes,
            merchants=merchants,
            timeout=timeout,
            status=live,
        )
        from nfcpay.terminals.parties import Parties

        collector = joined.request.collector_terminal
        name = Parties(home).learn(client, [collector]).get(collector)
    data = joined.to_json() | {"collector_label": name}
    obj.emit(
        data,
        f"Joined bill {data['bill_id']}: your share "
        f"{money_text(data['amount'], data['currency'])} is granted to "
        f"{labelled(name, collector)} (grant {data['grant']['grant_id']}, one use, until "
        f"{data['expires_at']}).",
    )


@group.command()
@click.argument("bill_id")
@click.option("--offline", is_flag=True, help="Do not ask the server about the grants.")
@click.pass_obj
def status(obj: CliContext, bill_id: str, offline: bool) -> None:
    """Who has joined a bill, what is still missing, and whether it is paid."""
    from nfcpay.terminals.collector import require_bill
    from nfcpay.terminals.held import HeldGrants
    from nfcpay.terminals.wallet import refresh

    home, _ = home_of(obj, "target")
    bill = require_bill(home, bill_id)
    if not offline:
        with client_of(obj, home) as client:
            try:
                refresh(home, client)
            except ApiError as exc:
                obj.status(f"Server unreachable ({exc.message}); showing what is stored.")
    known = {held.grant_id: held.last_known.status.value for held in HeldGrants(home).each()}
    for slot in bill["slots"]:
        slot["grant_status"] = known.get(slot["grant_id"])
    names = _member_names(obj, home, bill, ask=not offline)
    obj.emit({"ok": True, "bill": bill}, lambda: _show_bill(bill, [], names))


@group.command()
@click.argument("bill_id")
@click.argument("member")
@click.pass_obj
def drop(obj: CliContext, bill_id: str, member: str) -> None:
    """Drop MEMBER (a terminal id) from a bill: their share is open again for someone else
    (`group collect --bill BILL_ID`) or for your own source in remainder mode."""
    from nfcpay.terminals import bill as bills
    from nfcpay.terminals.collector import require_bill

    home, _ = home_of(obj, "target")
    bill = require_bill(home, bill_id)
    slot = bills.drop(bill, member)
    if bill["mode"] == "remainder":
        bill["slots"].remove(slot)  # the collector's remainder covers it
        bill["collector_share"] += slot["amount"]
        bills.refresh_status(bill)
    bills.save(home, bill)
    names = _member_names(obj, home, bill, ask=False)
    obj.emit({"ok": True, "bill": bill}, lambda: _show_bill(bill, [], names))


def _member_names(
    obj: CliContext, home: TerminalHome, bill: dict[str, Any], *, ask: bool
) -> dict[str, str]:
    """The names of the bill's members (each the owner of a grant this collector holds, so
    the server names them to it); with ``ask`` False, or the server out of reach, only those
    learnt before (the rest are shown by id)."""
    from nfcpay.terminals.parties import Parties

    if obj.as_json:
        return {}
    parties = Parties(home)
    members = [slot["member"] for slot in bill["slots"] if slot["member"]]
    if not ask or not members:
        return parties.known()
    with client_of(obj, home) as client:
        return parties.learn(client, members)


def _show_bill(bill: dict[str, Any], events: list[dict[str, Any]], names: dict[str, str]) -> None:
    from nfcpay.terminals import bill as bills

    currency = bill["currency"]
    for event in events:
        mark = "✓" if event["ok"] else "✗"
        click.echo(f"{mark} {event['message']}")
    rows = [
        [
            str(slot["slot"]),
            money_text(slot["amount"], currency),
            slot["status"],
            labelled(names.get(slot["member"]), slot["member"]) if slot["member"] else "",
            slot["grant_id"] or "",
        ]
        for slot in bill["slots"]
    ]
    click.echo(table(["slot", "share", "status", "member", "grant"], rows))
    click.echo(
        f"Collector's own share: {money_text(bill['collector_share'], currency)} "
        f"({bill['mode']} mode). {bills.progress(bill)}. Status: {bill['status']}."
    )
    if bill["status"] == "ready":
        click.echo(f"Pay it with: nfcpay target pay --bill {bill['bill_id']} --own-source SRC")
