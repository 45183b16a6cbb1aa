"""The decline vocabulary: every ``decline_code`` the payment server answers a payment with.

A declined payment's answer names the first failure's code in ``decline_code`` and every
failing share's in ``failing``. The values are the exact strings on the wire and in JSON
(``DeclineCode.NO_USES_LEFT == "no_uses_left"``). Members are listed in the order the server
checks them; the ``#:`` line above each says when it is answered (README's "Decline codes"
table is kept equal to these lines by a test).

A core module, so the server that produces the codes and the terminals and clients that read
them share one list without importing upwards.
"""

from __future__ import annotations

from enum import StrEnum, unique


@unique
class DeclineCode(StrEnum):
    """Why the server declined a payment (the ``decline_code`` of its answer)."""

    #: the shares do not make up the amount in the split mode, or an own share names no source
    SHARES_DO_NOT_ADD_UP = "shares_do_not_add_up"
    #: the payment's purpose is not one of the categories the merchant registered
    PURPOSE_NOT_REGISTERED = "purpose_not_registered"
    #: the bill the payment names was already paid by an earlier payment
    BILL_ALREADY_PAID = "bill_already_paid"
    #: the payment's currency, split mode or (exact mode) amount is not the bill's as opened
    BILL_TERMS_MISMATCH = "bill_terms_mismatch"
    #: a grant is bound to another bill, or none of the grants presented belongs to the bill
    BILL_MISMATCH = "bill_mismatch"
    #: the presenting terminal's signature over the request is missing or wrong
    BAD_SIGNATURE = "bad_signature"
    #: the merchant's challenge was already used for a payment
    CHALLENGE_REUSED = "challenge_reused"
    #: no grant has the id a share names
    UNKNOWN_GRANT = "unknown_grant"
    #: the presenting terminal is not one the grant was issued to
    TERMINAL_NOT_ALLOWED = "terminal_not_allowed"
    #: the usage-auth presented for a grant is not genuine (the fifth locks the grant)
    USAGE_AUTH_MISMATCH = "usage_auth_mismatch"
    #: the grant is locked after repeated wrong usage-auth values
    GRANT_LOCKED = "grant_locked"
    #: the grant's owner revoked it, or did not confirm it in time after the tap
    GRANT_REVOKED = "grant_revoked"
    #: the grant was handed over in a tap and its owner has not confirmed who tapped yet
    GRANT_NOT_CONFIRMED = "grant_not_confirmed"
    #: the grant's validity has not begun yet
    GRANT_NOT_YET_VALID = "grant_not_yet_valid"
    #: the grant's validity has ended
    GRANT_EXPIRED = "grant_expired"
    #: a grant, or the funding source behind a share, is in another currency than the payment
    CURRENCY_MISMATCH = "currency_mismatch"
    #: the grant has no uses left
    NO_USES_LEFT = "no_uses_left"
    #: a share is over its grant's per-use cap
    OVER_PER_USE_CAP = "over_per_use_cap"
    #: a share is over the amount its grant has left
    OVER_REMAINING_CAP = "over_remaining_cap"
    #: a share is over what its grant's allowance has left this day, week or month
    ALLOWANCE_EXCEEDED = "allowance_exceeded"
    #: the grant does not allow the payment's purpose (the merchant's category or an override)
    PURPOSE_NOT_ALLOWED = "purpose_not_allowed"
    #: the grant does not allow the merchant's region
    REGION_NOT_ALLOWED = "region_not_allowed"
    #: the grant does not allow this merchant
    MERCHANT_NOT_ALLOWED = "merchant_not_allowed"
    #: the own share names a funding source the presenting terminal does not hold
    UNKNOWN_SOURCE = "unknown_source"
    #: the funding source behind a share is dormant, closed or an expired card
    SOURCE_NOT_ACTIVE = "source_not_active"
    #: a card's unused credit limit does not cover the shares it backs
    LIMIT_EXCEEDED = "limit_exceeded"
    #: a wallet's or bank account's balance does not cover the shares it backs
    INSUFFICIENT_BALANCE = "insufficient_balance"
    #: the bill the payment names was not opened with the server by the presenting terminal
    BILL_NOT_YOURS = "bill_not_yours"
