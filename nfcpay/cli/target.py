"""``nfcpay target ...``: the terminal that holds grants and pays with them."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import click

from nfcpay.cli.output import EXIT_CODES_HELP, EXIT_DECLINED, EXIT_SERVER, CliContext, table
from nfcpay.cli.params import POSITIVE_AMOUNT
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
from nfcpay.errors import ApiError
from nfcpay.names import labelled

if TYPE_CHECKING:
    from nfcpay.records import ChallengeRecord
    from nfcpay.terminals.home import TerminalHome


@click.group()
def target() -> None:
    """Hold grants given to you and pay with them.

    Both `receive` and `pay` TAP the other terminal's reader (this reader polls): the user's
    terminal waits in `user give`, the merchant's in `merchant charge`.
    """


def _grant_summary(view: dict[str, Any]) -> str:
    currency = view["currency"]
    owner = labelled(view["issuing_label"], view["issuing_terminal"])
    return grant_lines(
        f"Grant {click.style(view['grant_id'], bold=True)} from {owner}",
        view,
        currency=currency,
        remaining=f"{money_text(view['remaining_amount'], currency)}, uses left "
        f"{view['remaining_uses']}/{view['max_uses']}",
    )


@target.command()
@click.option(
    "--remote",
    is_flag=True,
    help="Fetch the grants sent to this terminal through the server (`user send`) instead "
    "of tapping: no reader needed.",
)
@click.option(
    "--follow",
    is_flag=True,
    help="With --remote: keep waiting for the next grant sent here (Ctrl-C to stop).",
)
@tap_options
@click.pass_obj
def receive(
    obj: CliContext, remote: bool, follow: bool, timeout: float, listen: bool | None
) -> None:
    """Tap the user's terminal and keep the grant it hands over (with --carrier tag: read
    it from the sticker the user wrote it to, and wipe the sticker).

    This terminal's key fingerprint is shown while waiting: the owner compares it with the
    one on their screen before confirming the grant, which pays nothing until then.

    With --remote, no tap: the grants an owner sent to this terminal with `user send` are
    fetched from the server, checked like a tapped grant, kept, and then acknowledged (the
    server deletes its copy and tells the owner). A fetch that fails half way is safe to
    run again: the server keeps a grant until this terminal says it has it."""
    if follow and not remote:
        raise click.UsageError("--follow waits for grants sent through the server: add --remote")
    if remote:
        _receive_remote(obj, follow)
        return
    from nfcpay.crypto import format_fingerprint
    from nfcpay.terminals.exchange import own_fingerprint
    from nfcpay.terminals.target import receive_grant, receive_grant_from_tag
    from nfcpay.terminals.wallet import wallet_view

    home, _ = home_of(obj, "target")
    fingerprint = format_fingerprint(own_fingerprint(home))
    obj.status(
        f"This terminal's key fingerprint: {click.style(fingerprint, bold=True)} — the owner "
        "compares it with the one on their screen before confirming."
    )
    take = receive_grant_from_tag if obj.carrier == "tag" else receive_grant
    with reader_of(obj, listen, tag_ok=True) as reader, LiveStatus(obj) as live:
        held = take(home, reader, timeout=timeout, status=live)
    view = wallet_view(held, _learn(obj, home, [held.record.issuing_terminal]))
    obj.emit(
        {"ok": True, "grant": view, "key_fingerprint": fingerprint},
        lambda: click.echo(
            f"Received.\n{_grant_summary(view)}\nThis terminal's key fingerprint is "
            f"{fingerprint}; a grant given in a tap pays once the owner has confirmed it."
        ),
    )


def _receive_remote(obj: CliContext, follow: bool) -> None:
    """``receive --remote [--follow]``: one JSON document for all the grants fetched, or
    with --follow one per grant as it arrives."""
    from nfcpay.terminals import remote
    from nfcpay.terminals.parties import Parties
    from nfcpay.terminals.wallet import wallet_view

    home, _ = home_of(obj, "target")

    def shown(got: remote.Received) -> dict[str, Any]:
        return {"grant": wallet_view(got.held, Parties(home).known()), "delivery": got.delivery}

    def text(item: dict[str, Any]) -> str:
        sender = item["delivery"]["from"]
        origin = labelled(sender["label"], sender["terminal_id"])
        return f"Received through the server from {origin}.\n{_grant_summary(item['grant'])}"

    with client_of(obj, home) as client:
        if follow:
            obj.status("Waiting for grants sent to this terminal; Ctrl-C to stop.")
            for got in remote.follow(home, client):
                item = shown(got)
                obj.emit({"ok": True, **item}, text(item))
            return
        items = [shown(got) for got in remote.receive(home, client)]
    obj.emit(
        {"ok": True, "received": items},
        "\n".join(map(text, items)) or "No grants waiting on the server for this terminal.",
    )


@target.command()
@click.pass_obj
def inbox(obj: CliContext) -> None:
    """Grants sent to this terminal through the server and not fetched yet (`receive
    --remote` keeps them). Looking changes nothing: they stay on the server."""
    from nfcpay.terminals import remote

    home, _ = home_of(obj, "target")
    with client_of(obj, home) as client:
        waiting = remote.inbox(home, client)
    items = [
        {**{k: v for k, v in item.items() if k != "record"}, "grant": _record_view(record)}
        for item, record in waiting
    ]
    rows = [
        [
            item["grant_id"],
            labelled(item["from"]["label"], item["from"]["terminal_id"]),
            money_text(item["grant"]["amount_cap"], item["grant"]["currency"]),
            item["created_at"],
        ]
        for item in items
    ]
    human = table(["grant", "from", "cap", "sent"], rows) if rows else "Nothing waiting."
    obj.emit({"ok": True, "deliveries": items}, human)


def _record_view(record: Any) -> dict[str, Any]:
    """A received grant record as --json shows it: without its usage-auth."""
    return {k: v for k, v in record.to_json().items() if k != "usage_auth"}


@target.command()
@click.option("--offline", is_flag=True, help="Do not ask the server; show what is stored.")
@click.pass_obj
def wallet(obj: CliContext, offline: bool) -> None:
    """Held grants with what remains (refreshed from the server), what is left of each
    allowance this day, week or month and when it renews, and past payments.

    A payment whose result never arrived (the link was lost) is settled from the server's
    answer for it: approved with its payment, or left open while the server has no payment
    for it so far (the merchant may still send it).
    """
    from nfcpay.terminals.wallet import wallet as load_wallet

    home, _ = home_of(obj, "target")
    if offline:
        held = load_wallet(home)
    else:
        with client_of(obj, home) as client:
            try:
                held = load_wallet(home, client)
            except ApiError as exc:
                obj.status(f"Server unreachable ({exc.message}); showing what is stored.")
                held = load_wallet(home)
    obj.emit(held.to_json(), lambda: _show_wallet(held.to_json()))


#: Held-grant statuses that read better as words.
_STATUS_TEXT = {"unconfirmed": "waiting for the owner's confirmation"}


def _show_wallet(data: dict[str, Any]) -> None:
    rows = [
        [
            g["grant_id"],
            labelled(g["issuing_label"], g["issuing_terminal"]),
            money_text(g["remaining_amount"], g["currency"]),
            f"{g['remaining_uses']}/{g['max_uses']}",
            _STATUS_TEXT.get(g["status"], g["status"]),
            g["as_of"],
        ]
        for g in data["grants"]
    ]
    headers = ["grant", "from", "remaining", "uses", "status", "as of"]
    click.echo(table(headers, rows) if rows else "No grants held.")
    for line in filter(None, map(allowance_line, data["grants"])):
        click.echo(line)
    if data["receipts"]:
        click.echo("")
        receipt_rows = [
            [
                r["receipt_id"],
                labelled(r["merchant_name"], r["merchant_id"]),
                money_text(r["amount"], r["currency"]),
                r["status"],
                _receipt_detail(r, data["refreshed"]),
            ]
            for r in data["receipts"]
        ]
        click.echo(table(["receipt", "merchant", "amount", "status", "detail"], receipt_rows))


def allowance_line(view: dict[str, Any]) -> str | None:
    """``g_…: 7,000 of 10,000 KRW left today (renews 00:00 Asia/Seoul)`` for a held grant
    (:func:`~nfcpay.terminals.wallet.wallet_view`) with an allowance, else None."""
    from datetime import datetime

    from nfcpay.allowance import Period, renewal_text, zone

    if view.get("allowance_period") is None:
        return None
    period, currency = Period(view["allowance_period"]), view["currency"]
    left = money_text(view["allowance_left"], currency)
    line = f"{view['grant_id']}: {left} of {money_text(view['allowance_amount'], currency)} "
    line += f"left {period.this}"
    if view.get("allowance_renews_at"):
        when = renewal_text(
            datetime.fromisoformat(view["allowance_renews_at"]), zone(view["time_zone"])
        )
        line += f" (renews {when.split(' ', 3)[3] if period is Period.DAY else when})"
    return line


def _receipt_detail(receipt: dict[str, Any], refreshed: bool) -> str:
    """The decline code or payment; after a refresh, an open receipt is one the server has
    no payment for so far (the merchant may still send its means)."""
    from nfcpay.terminals.receipts import UNSETTLED

    if receipt["status"] in UNSETTLED and refreshed:
        return "not charged so far"
    return str(receipt.get("decline_code") or receipt.get("payment_id") or "")


@target.command(epilog=EXIT_CODES_HELP)
@click.option("--grant", "grant_ids", multiple=True, help="Pay with this grant (repeat).")
@click.option(
    "--amount",
    type=POSITIVE_AMOUNT,
    help="What you pay when the merchant lets you enter the amount (`merchant charge --open`); "
    "without it the first tap shows you the merchant, purpose and maximum, you type the "
    "amount with the readers apart, and tap again. A merchant that asks another amount "
    "itself is refused.",
)
@click.option("--bill", "bill_id", help="Pay this group bill (see `nfcpay group collect`).")
@click.option(
    "--own-source",
    "own_source_id",
    help="With --bill: your funding source for your own share (default: the first active).",
)
@tap_options
@click.pass_obj
def pay(
    obj: CliContext,
    grant_ids: tuple[str, ...],
    bill_id: str | None,
    own_source_id: str | None,
    amount: str | None,
    timeout: float,
    listen: bool | None,
) -> None:
    """Tap the merchant's terminal, answer its challenge and show the result it sends back.

    When the merchant lets you enter the amount, you pay --amount or what you type when
    asked (at most the merchant's maximum); it is signed and charged exactly. The question
    comes between two taps, never during one: a hand that drifts while typing loses nothing.
    """
    from nfcpay.terminals.open_amount import AmountNeeded
    from nfcpay.terminals.receipts import ReceiptStatus
    from nfcpay.terminals.target import pay as pay_merchant

    home, identity = home_of(obj, "target")
    entered = amount_in(amount, identity.currency).minor if amount is not None else None
    if bill_id is not None and grant_ids:
        raise click.UsageError("--bill presents the bill's grants: no --grant with it")
    if bill_id is not None and own_source_id is None:
        from nfcpay.errors import ConfigError
        from nfcpay.terminals.user import default_source

        with client_of(obj, home) as client:
            try:
                own_source_id = default_source(client, identity.currency)
            except ConfigError:
                own_source_id = None  # fine while the members' shares cover the bill
    with reader_of(obj, listen) as reader, LiveStatus(obj) as live:
        tap = functools.partial(
            pay_merchant,
            home,
            reader,
            grant_ids=grant_ids,
            bill_id=bill_id,
            own_source_id=own_source_id,
            timeout=timeout,
            status=live,
        )
        try:
            paid = tap(amount=entered)
        except AmountNeeded as needed:
            typed = _ask_amount(live, home, needed.challenge)
            again = money_text(typed, needed.challenge.currency)
            live(f"Tap the merchant's reader again to pay {again}.")
            paid = tap(amount=typed, merchant=needed.challenge.merchant_id)
    receipt = paid.receipt
    money = money_text(receipt.amount, receipt.currency)
    approved = paid.status is ReceiptStatus.APPROVED
    # Paying made this terminal a party with the merchant: the server now tells its name.
    name = _learn(obj, home, [receipt.merchant_id]).get(receipt.merchant_id) if approved else None
    if approved:
        shop = labelled(name, receipt.merchant_id)
        human = f"APPROVED {money} at {shop} (approval {receipt.approval_code})"
    elif paid.status is ReceiptStatus.PENDING:
        human = f"PENDING {money}: {receipt.message}"
    else:
        human = f"DECLINED {money}: {receipt.decline_code} — {receipt.message}"
    obj.emit(paid.to_json() | {"merchant_name": name}, human)
    if paid.status is ReceiptStatus.DECLINED:
        click.get_current_context().exit(EXIT_DECLINED)
    if paid.status is ReceiptStatus.PENDING:
        click.get_current_context().exit(EXIT_SERVER)


def _learn(obj: CliContext, home: TerminalHome, party_ids: list[str]) -> dict[str, str]:
    """The names of the parties this terminal knows, asking the server for ``party_ids``
    not learnt yet; one it will not name (or an unreachable server) is shown by its id."""
    from nfcpay.terminals.parties import Parties

    with client_of(obj, home) as client:
        return Parties(home).learn(client, party_ids)


def _ask_amount(live: LiveStatus, home: TerminalHome, challenge: ChallengeRecord) -> int:
    """The amount the person types for an open challenge (asked again until it reads as a
    positive amount in the challenge's currency), in minor units."""
    from nfcpay.money import format_minor
    from nfcpay.terminals.parties import Parties

    limit = challenge.max_amount
    most = "" if limit is None else f", at most {format_minor(limit, challenge.currency)}"

    def read(text: str) -> int:
        return amount_in(POSITIVE_AMOUNT.convert(text, None, None), challenge.currency).minor

    with live.paused():
        minor: int = click.prompt(
            f"Amount to pay merchant {Parties(home).labelled(challenge.merchant_id)} "
            f"({challenge.currency}{most})",
            value_proc=read,
            err=True,
        )
    return minor
