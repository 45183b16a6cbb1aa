"""What a target terminal signs, built from the NFC records: the merchant's challenge and the
means answering it.

The target signs :func:`presentation` of the challenge it received and its unsigned means
(:func:`signed`); the server checks the same :class:`nfcpay.crypto.Presentation`, built from
the merchant's request (:func:`nfcpay.server.services.rules.presentation`), which carries
the challenge's amount, currency, purpose and nonce and the means as the merchant received
them. The purpose is signed, so a merchant cannot claim another one after the tap.

The signed amount is the challenge's, or for an open challenge the sum of the means' shares:
the amount the target's person entered (:func:`signed_amount`). The merchant asks the server
for exactly that amount, so one it changes fails the signature like any other field.

>>> from nfcpay.records import ChallengeRecord, MeansRecord, PresentedGrant
>>> challenge = ChallengeRecord(
...     merchant_id="m_r2d5k8x3q7w4b9n6",
...     currency="KRW",
...     amount=12_000,
...     nonce=bytes(16),
...     purpose="5812",
... )
>>> means = MeansRecord(
...     presenting_terminal="t_k7x2m4q9w3b5n8c6",
...     currency="KRW",
...     grants=[PresentedGrant(grant_id="g_3fz7q2m4k9xw6a5b", amount=12_000, usage_auth=bytes(32))],
...     signature=bytes(64),
... )
>>> presented = presentation(challenge, means)
>>> presented.amount, presented.grants, len(presented.message())
(12000, (GrantShare(grant_id='g_3fz7q2m4k9xw6a5b', amount=12000),), 170)
"""

from __future__ import annotations

import dataclasses

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nfcpay import crypto
from nfcpay.records.challenge import ChallengeRecord
from nfcpay.records.means import MeansRecord


def presentation(challenge: ChallengeRecord, means: MeansRecord) -> crypto.Presentation:
    """What ``means`` answering ``challenge`` presents: the challenge's nonce, merchant,
    amount (:func:`signed_amount`), currency and purpose, and the means' terminal, shares,
    bill and split mode (its signature and usage-auths are not signed). Raises ValueError
    for a challenge without a purpose: nothing can be signed for it (it comes from a
    merchant on an older nfcpay)."""
    if challenge.purpose is None:
        raise ValueError("a challenge without a purpose cannot be presented")
    return crypto.Presentation(
        nonce=challenge.nonce,
        merchant_id=challenge.merchant_id,
        amount=signed_amount(challenge, means),
        currency=challenge.currency,
        purpose=challenge.purpose,
        presenting_terminal=means.presenting_terminal,
        grants=tuple(crypto.GrantShare(g.grant_id, g.amount) for g in means.grants),
        own_source_id=means.own_source_id,
        own_amount=means.own_amount,
        bill_id=means.bill_id,
        split_mode=means.split_mode.value,
    )


def signed_amount(challenge: ChallengeRecord, means: MeansRecord) -> int:
    """The amount ``means`` pay for ``challenge``: the challenge's own, or for an open one
    (:attr:`ChallengeRecord.is_open`) what the target entered: the sum of its shares."""
    return means.total if challenge.amount is None else challenge.amount


def signed(challenge: ChallengeRecord, means: MeansRecord, key: Ed25519PrivateKey) -> MeansRecord:
    """``means`` with ``key``'s signature over its :func:`presentation` for ``challenge``
    (whatever signature it had is replaced)."""
    signature = key.sign(presentation(challenge, means).message())
    return dataclasses.replace(means, signature=signature)
