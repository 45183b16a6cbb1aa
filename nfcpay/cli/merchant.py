"""``nfcpay merchant ...``: the counter terminal that charges."""

from __future__ import annotations

from typing import Any

import click

from nfcpay.cli.output import EXIT_CODES_HELP, EXIT_DECLINED, EXIT_SERVER, CliContext, table
from nfcpay.cli.params import CATEGORIES, IDEMPOTENCY_KEY, PAYMENT_ID, POSITIVE_AMOUNT, PURPOSE
from nfcpay.cli.terminal import (
    LiveStatus,
    amount_in,
    bad_value,
    checked_categories,
    client_of,
    home_of,
    money_text,
    reader_of,
    tap_options,
)
from nfcpay.names import labelled
from nfcpay.terminals.home import TerminalHome


@click.group()
def merchant() -> None:
    """Charge customers who tap, list payments, refund.

    `charge` WAITS for the target terminal's tap (this reader listens: use a listen-capable
    reader such as the RC-S380 at the counter).
    """


def _finish(obj: CliContext, charges: list[Any]) -> None:
    """Exit status of the last charge: 0 approved, 3 declined, 5 still pending."""
    last = charges[-1] if charges else None
    if last is not None and last.status == "declined":
        click.get_current_context().exit(EXIT_DECLINED)
    if last is not None and last.status == "pending":
        click.get_current_context().exit(EXIT_SERVER)


@merchant.command(epilog=EXIT_CODES_HELP)
@click.option("--amount", type=POSITIVE_AMOUNT, help="What the customer pays.")
@click.option(
    "--open",
    "open_amount",
    is_flag=True,
    help="Let the customer enter the amount on their terminal (a donation box, a fare they "
    "confirm): it is signed there and charged exactly.",
)
@click.option(
    "--max",
    "max_amount",
    type=POSITIVE_AMOUNT,
    help="With --open: the most the customer may enter; more is refused before the server "
    "is asked.",
)
@click.option(
    "--purpose",
    type=PURPOSE,
    help="What the payment is for: one of this merchant's categories (default: the primary "
    "one). The customer's terminal shows it and signs it.",
)
@tap_options
@click.pass_obj
def charge(
    obj: CliContext,
    amount: str | None,
    open_amount: bool,
    max_amount: str | None,
    purpose: str | None,
    timeout: float,
    listen: bool | None,
) -> None:
    """Wait for a tap, challenge it, ask the server, send the result back.

    With --open no amount is asked: the customer's terminal enters one (at most --max) and
    signs it, and that amount is charged. Before asking the server a pending receipt is
    stored; if the server cannot be reached the command exits 5 and `nfcpay merchant settle`
    sends the same request again later (same idempotency key: it is never charged twice).
    """
    from nfcpay.terminals.merchant import categories
    from nfcpay.terminals.merchant import charge as run_charge

    home, identity = home_of(obj, "merchant")
    if open_amount == (amount is not None):
        raise click.UsageError(
            "give the amount to charge with --amount, or --open to let the customer enter it"
        )
    if max_amount is not None and not open_amount:
        raise bad_value("max_amount", "--max is the most a customer may enter: use it with --open")
    money = amount_in(amount, identity.currency) if amount is not None else None
    most = amount_in(max_amount, identity.currency) if max_amount is not None else None
    with client_of(obj, home) as client:
        known = categories(home, client)
    if purpose is not None and purpose not in known:
        raise bad_value(
            "purpose",
            f"purpose {purpose} is not one of this merchant's categories ({', '.join(known)}); "
            "`nfcpay merchant categories set` changes them",
        )
    with client_of(obj, home) as client, reader_of(obj, listen) as reader, LiveStatus(obj) as live:
        done = run_charge(
            home,
            client,
            reader,
            money,
            max_amount=most,
            purpose=purpose,
            timeout=timeout,
            status=live,
        )
    human = done.describe()
    if done.open_amount:
        human += "\n(the amount was entered and signed on the customer's terminal)"
    if done.delivered is False:
        human += "\n(the customer's terminal did not get the result: the link was lost)"
    obj.emit(done.to_json(), human)
    _finish(obj, [done])


@merchant.command()
@click.argument("receipt_id", required=False)
@click.pass_obj
def settle(obj: CliContext, receipt_id: str | None) -> None:
    """Send charges left pending (server unreachable) again, with their own idempotency keys."""
    from nfcpay.terminals.merchant import settle as settle_pending

    home, _ = home_of(obj, "merchant")
    with client_of(obj, home) as client:
        done = settle_pending(home, client, receipt_id)
    obj.emit(
        {"ok": all(c.status != "pending" for c in done), "charges": [c.to_json() for c in done]},
        "\n".join(f"{c.receipt_id}: {c.describe()}" for c in done) or "Nothing to settle.",
    )
    _finish(obj, done)


@merchant.command()
@click.pass_obj
def payments(obj: CliContext) -> None:
    """Payments the server approved for this merchant, and receipts still pending here."""
    from nfcpay.terminals.merchant import receipts

    home, _ = home_of(obj, "merchant")
    with client_of(obj, home) as client:
        found = client.list_payments()
    pending = [r.to_json() for r in receipts(home) if r.status == "pending"]
    rows = [
        [
            p["payment_id"],
            p["created_at"],
            money_text(p["amount"], p["currency"]),
            money_text(p.get("refunded", 0), p["currency"]),
            labelled(p["presenting_label"], p["presenting_terminal"]),
        ]
        for p in found
    ]
    human = table(["payment", "at", "amount", "refunded", "paid by"], rows)
    if pending:
        human += "\n\nPending (run `nfcpay merchant settle`): " + ", ".join(
            r["receipt_id"] for r in pending
        )
    obj.emit({"ok": True, "payments": found, "pending": pending}, human)


@merchant.command()
@click.argument("payment_id", type=PAYMENT_ID)
@click.option(
    "--amount", type=POSITIVE_AMOUNT, help="Part of the payment (default: all that is left)."
)
@click.option(
    "--idempotency-key",
    type=IDEMPOTENCY_KEY,
    help="Use this key instead (by default an unanswered refund's own key is reused).",
)
@click.pass_obj
def refund(
    obj: CliContext, payment_id: str, amount: str | None, idempotency_key: str | None
) -> None:
    """Refund a payment, fully or in part.

    If the server's answer is lost (exit 5), run the same command again: it resends the
    saved request with the same idempotency key, so the payment is never refunded twice.
    """
    from nfcpay.terminals import refunds

    home, identity = home_of(obj, "merchant")
    minor = amount_in(amount, identity.currency).minor if amount else None
    with client_of(obj, home) as client:
        done = refunds.refund(home, client, payment_id, minor, idempotency_key=idempotency_key)
    currency = done["currency"]
    obj.emit(
        {"ok": True, "refund": done},
        f"Refunded {money_text(done['amount'], currency)} of {payment_id} "
        f"({done['refund_id']}); still refundable "
        f"{money_text(done['remaining_refundable'], currency)}",
    )


@merchant.group(invoke_without_command=True)
@click.pass_context
def categories(ctx: click.Context) -> None:
    """This merchant's categories (the purposes its payments may be for) and their changes.

    Without a subcommand: show them, primary first, with every logged change.
    """
    if ctx.invoked_subcommand is None:
        obj: CliContext = ctx.obj
        home, _ = home_of(obj, "merchant")
        with client_of(obj, home) as client:
            _show_categories(obj, home, client.merchant_categories())


@categories.command("set")
@click.argument("codes", metavar="CATEGORY...", nargs=-1, required=True, type=CATEGORIES)
@click.pass_obj
def set_categories(obj: CliContext, codes: tuple[tuple[str, ...], ...]) -> None:
    """Replace this merchant's categories (primary first; codes or comma lists).

    The request is signed by this terminal, and the server logs who changed what, when.
    """
    wanted = checked_categories(codes, "codes")
    home, _ = home_of(obj, "merchant")
    with client_of(obj, home) as client:
        answer = client.set_merchant_categories(wanted)
    _show_categories(obj, home, answer)


def _show_categories(obj: CliContext, home: TerminalHome, answer: dict[str, Any]) -> None:
    """Print the server's answer, and keep its categories in this home (the default
    purpose of the next charge)."""
    from nfcpay.terminals.merchant import remember_categories

    remember_categories(home, answer["categories"])
    lines = [f"Merchant {answer['merchant_id']}: {', '.join(answer['categories'])} (primary first)"]
    for change in answer["changes"]:
        old, new = ", ".join(change["old"]) or "(registered)", ", ".join(change["new"])
        lines.append(f"  {change['changed_at']}  {old} -> {new}  by {change['terminal_id']}")
    obj.emit({"ok": True, **answer}, "\n".join(lines))
