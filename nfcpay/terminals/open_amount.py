"""Open-amount charges: the merchant names no amount and the target's person enters it.

The merchant's challenge is then *open* (:attr:`nfcpay.records.ChallengeRecord.is_open`),
optionally with a maximum. The target prices it with the amount entered (:func:`price`),
pays and signs that; the merchant charges exactly the signed amount. Both sides refuse an
amount over the maximum themselves (:func:`over_max`), so the server never hears of it.
"""

from __future__ import annotations

from collections.abc import Callable

from nfcpay.errors import AmountRefused, Declined
from nfcpay.money import MAX_MINOR, format_minor
from nfcpay.records import ChallengeRecord

#: Refusal codes, as the other terminal is told them and ``--json`` shows them.
OVER_MAX = "over_max"
AMOUNT_FIXED = "amount_fixed"
AMOUNT_NEEDED = "amount_needed"
BILL_NEEDS_AMOUNT = "bill_needs_amount"
#: How long the merchant waits for the means of an open charge: the customer types meanwhile.
ENTRY_TIMEOUT = 120.0

#: Asks the target's person for the amount of an open challenge (shown its merchant, purpose
#: and maximum); returns minor units of the challenge's currency.
AmountEntry = Callable[[ChallengeRecord], int]


def asked(challenge: ChallengeRecord, enterer: str) -> str:
    """What ``challenge`` asks for, for a status line: ``12,000 KRW``, or for an open one
    ``the amount <enterer> enter(s) (at most 50,000 KRW)``."""
    if challenge.amount is not None:
        return format_minor(challenge.amount, challenge.currency)
    text = f"the amount {enterer}"
    if challenge.max_amount is not None:
        text += f" (at most {format_minor(challenge.max_amount, challenge.currency)})"
    return text


def over_max(amount: int, challenge: ChallengeRecord) -> AmountRefused:
    """The refusal of an entered ``amount`` above ``challenge``'s maximum (or above any
    amount nfcpay carries, for an open challenge without one)."""
    money = format_minor(amount, challenge.currency)
    if challenge.max_amount is None:
        most = format_minor(MAX_MINOR, challenge.currency)
        return AmountRefused(f"{money} is more than nfcpay charges (at most {most})", code=OVER_MAX)
    limit = format_minor(challenge.max_amount, challenge.currency)
    return AmountRefused(
        f"{money} is more than merchant {challenge.merchant_id} accepts for this charge "
        f"(at most {limit})",
        code=OVER_MAX,
    )


def check_max(amount: int, challenge: ChallengeRecord) -> int:
    """``amount`` if it is within ``challenge``'s maximum, else :func:`over_max`."""
    if amount > min(challenge.max_amount or MAX_MINOR, MAX_MINOR):
        raise over_max(amount, challenge)
    return amount


def price(
    challenge: ChallengeRecord,
    amount: int | None,
    enter_amount: AmountEntry | None,
    *,
    bill_id: str | None = None,
) -> ChallengeRecord:
    """The challenge the target pays and signs: a fixed one as it is, an open one priced with
    ``amount`` (given up front, ``--amount``) or else what ``enter_amount`` asks for.

    A fixed challenge for another amount than the one given is refused: the person named
    what they mean to pay. An open challenge cannot pay the group bill ``bill_id`` (a bill is
    paid for the total the merchant charges). Raises AmountRefused or Declined, saying why.
    """
    asked_by = f"merchant {challenge.merchant_id}"
    if challenge.amount is not None:
        if amount is not None and amount != challenge.amount:
            asked = format_minor(challenge.amount, challenge.currency)
            raise AmountRefused(
                f"{asked_by} asks for {asked}, not the {format_minor(amount, challenge.currency)}"
                " you entered; nothing was paid (pay without --amount to pay what it asks)",
                code=AMOUNT_FIXED,
            )
        return challenge
    if bill_id is not None:
        raise Declined(
            f"{asked_by} leaves the amount to you, but a group bill is paid for the total the "
            "merchant charges: ask the merchant to charge the bill's total",
            code=BILL_NEEDS_AMOUNT,
        )
    if amount is None:
        if enter_amount is None:
            raise AmountRefused(
                f"{asked_by} asks you to enter the amount: pay again with --amount",
                code=AMOUNT_NEEDED,
            )
        amount = enter_amount(challenge)
    return challenge.priced(check_max(amount, challenge))
