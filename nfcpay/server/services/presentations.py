"""What became of the means a terminal presented: the exact outcome of one challenge.

A target whose link to the merchant dropped before the result came back asks here, by the
merchant and the challenge its means answered (``GET /v1/presentations/{merchant}/{challenge}``),
instead of guessing from how its grants changed. The answer is the payment those means made,
as the merchant sees it (:func:`payments.view`: shares name grants, never the funding source
behind them), or :data:`NO_PAYMENT_YET`.

"No payment yet" is all the server can say otherwise, never "no payment ever": a challenge is
the merchant's own nonce, with no lifetime here; a merchant whose server was unreachable
sends the same means again later (``merchant settle``); and declined attempts leave no row.
So the presenting terminal keeps such a receipt open and asks again next time.

Only the two parties to a payment may read it: the terminal that presented the means and
the merchant that took them. Anyone else gets the same 404 as for a challenge no payment
used, so the answer never reveals that a payment exists.
"""

from __future__ import annotations

from typing import Any

from nfcpay.errors import NotFound
from nfcpay.server.runtime import Caller
from nfcpay.server.services import payments
from nfcpay.server.services.rules import challenge_bytes
from nfcpay.server.store import Row, Tx

#: The error code of "no payment with these means so far" (HTTP 404).
NO_PAYMENT_YET = "no_payment_yet"


def outcome(tx: Tx, caller: Caller, merchant_id: str, challenge: str) -> dict[str, Any]:
    """``{"payment": …}`` made with the means the caller presented (or, for the merchant,
    took) for ``merchant_id``'s ``challenge`` (base64url); NotFound when there is none so far
    or the caller is neither party."""
    nonce = challenge_bytes(challenge)
    payment_id = tx.scalar(
        "SELECT payment_id FROM challenges WHERE merchant_id = ? AND challenge = ?",
        (merchant_id, nonce),
    )
    row = None if payment_id is None else payments.find(tx, str(payment_id))
    if row is None or not _party_to(caller, row):
        raise NotFound(
            f"no payment so far for challenge {challenge} of merchant {merchant_id} that this "
            "terminal may see (the merchant may still send the means presented for it)",
            code=NO_PAYMENT_YET,
        )
    return {"payment": payments.view(row, payments.load_shares(tx, row["payment_id"]))}


def _party_to(caller: Caller, payment: Row) -> bool:
    if caller.merchant_id is not None:
        return bool(caller.merchant_id == payment["merchant_id"])
    return bool(caller.terminal_id == payment["presenting_terminal"])
