"""Merchant refunds that survive a lost answer.

A refund whose answer never arrived (server unreachable, a timeout, the process killed) may
or may not have been carried out. So before the request leaves, its payment, amount and
idempotency key are saved as ``refunds/<payment id>.json``. Until the server has answered,
running the same refund again sends the SAME key, and the server replays its first answer
instead of refunding twice. The file is removed once the server has answered, so a later,
deliberate second refund of the same amount gets a key of its own.
"""

from __future__ import annotations

from typing import Any

from nfcpay.client import PaymentClient, new_idempotency_key
from nfcpay.errors import ApiError, ConfigError, ServerUnavailable
from nfcpay.money import format_minor
from nfcpay.terminals.clock import now_iso
from nfcpay.terminals.home import TerminalHome

Json = dict[str, Any]


def refund(
    home: TerminalHome,
    client: PaymentClient,
    payment_id: str,
    amount: int | None,
    *,
    idempotency_key: str | None = None,
) -> Json:
    """Refund ``amount`` minor units of ``payment_id`` (``None``: all that is left).

    Raises :class:`ConfigError` when an earlier, different refund of the same payment is
    still unanswered: that one must be finished first, or it could be lost or doubled.
    """
    identity = home.require_role("merchant")
    unanswered = pending(home, payment_id)
    if unanswered is not None and idempotency_key is None:
        if unanswered["amount"] != amount:
            raise ConfigError(
                f"an earlier refund of {_what(unanswered['amount'], identity.currency)} for "
                f"{payment_id} has no answer yet; run `nfcpay merchant refund {payment_id}"
                f"{_amount_option(unanswered['amount'], identity.currency)}` again to finish "
                "it first (it cannot refund twice)"
            )
        idempotency_key = unanswered["idempotency_key"]
    key = idempotency_key or new_idempotency_key()
    home.put(
        "refunds",
        payment_id,
        {"payment_id": payment_id, "amount": amount, "idempotency_key": key, "sent_at": now_iso()},
    )
    try:
        answer = client.refund(payment_id, amount, idempotency_key=key)
    except ServerUnavailable as exc:
        raise ServerUnavailable(
            f"{exc.message}; the refund may or may not have been made — run the same "
            "command again when the server is back (it cannot refund twice)",
            code=exc.code,
            status=exc.status,
        ) from exc
    except ApiError:
        home.delete("refunds", payment_id)  # the server answered: nothing is in doubt
        raise
    home.delete("refunds", payment_id)
    return answer


def pending(home: TerminalHome, payment_id: str) -> Json | None:
    """The unanswered refund of ``payment_id``, if there is one."""
    try:
        return home.get("refunds", payment_id)
    except ConfigError:
        return None


def _what(amount: int | None, currency: str) -> str:
    return "all that was left" if amount is None else format_minor(amount, currency)


def _amount_option(amount: int | None, currency: str) -> str:
    return "" if amount is None else f" --amount {format_minor(amount, currency).split()[0]}"
