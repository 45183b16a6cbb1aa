"""Open-amount charges: the merchant names no amount and the target's person enters it.

The merchant's challenge is then *open* (:attr:`nfcpay.records.ChallengeRecord.is_open`),
optionally with a maximum. The target prices it with the amount entered (:func:`price`),
pays and signs that; the merchant charges exactly the signed amount. Both sides refuse an
amount over the maximum themselves (:func:`over_max`), so the server never hears of it.

A tap never waits for a person: a target that meets an open charge with no amount ready
refuses it with :class:`AmountNeeded` (the merchant, its purpose and maximum), which ends
the tap; the person types the amount with the readers apart, and the target taps again
with it (``merchant`` then pins the amount to the merchant it was typed for). The merchant
keeps waiting for that second tap (:data:`ENTRY_TIMEOUT`).
"""

from __future__ import annotations

from nfcpay.errors import AmountRefused, Declined
from nfcpay.money import MAX_MINOR, format_minor
from nfcpay.records import ChallengeRecord

#: Refusal codes, as the other terminal is told them and ``--json`` shows them.
OVER_MAX = "over_max"
AMOUNT_FIXED = "amount_fixed"
AMOUNT_NEEDED = "amount_needed"
OTHER_MERCHANT = "other_merchant"
BILL_NEEDS_AMOUNT = "bill_needs_amount"
#: How long the merchant of an open charge waits for the customer's second tap, after a
#: first one that showed the customer the charge (they type the amount meanwhile).
ENTRY_TIMEOUT = 120.0
#: Taps of one open charge that may end "amount needed" before the merchant gives up.
ENTRY_TAPS = 3


class AmountNeeded(AmountRefused):
    """An open charge met with no amount: the target refused it (the tap is over) and its
    person is to enter the amount for :attr:`challenge` and tap again."""

    code = AMOUNT_NEEDED

    def __init__(self, challenge: ChallengeRecord) -> None:
        super().__init__(
            f"merchant {challenge.merchant_id} asks you to enter the amount: the tap ended so "
            "that you can type it; tap again with it (or pay with --amount)"
        )
        self.challenge = challenge


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
    *,
    merchant: str | None = None,
    bill_id: str | None = None,
) -> ChallengeRecord:
    """The challenge the target pays and signs: a fixed one as it is, an open one priced with
    ``amount`` (``--amount``, or typed after an earlier tap: see :class:`AmountNeeded`).

    A fixed challenge for another amount than the one given is refused: the person named
    what they mean to pay. An amount typed for ``merchant`` is refused at any other one. An
    open challenge cannot pay the group bill ``bill_id`` (a bill is paid for the total the
    merchant charges). Raises AmountRefused (AmountNeeded) or Declined, saying why.
    """
    asked_by = f"merchant {challenge.merchant_id}"
    if merchant is not None and merchant != challenge.merchant_id:
        raise AmountRefused(
            f"you entered the amount for merchant {merchant}, but {asked_by} answered this "
            "tap; nothing was paid",
            code=OTHER_MERCHANT,
        )
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
        raise AmountNeeded(challenge)
    return challenge.priced(check_max(amount, challenge))
