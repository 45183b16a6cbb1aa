"""Idempotency keys for payments and refunds, scoped to the calling merchant.

A request first *claims* its key by inserting a placeholder row. The primary key
(merchant, key) makes a concurrent request with the same key wait for the first one's
transaction: once that commits, the second finds the stored answer and replays it; if the
first rolled back or released the key (a decline stores nothing), the second proceeds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from nfcpay.errors import IdempotencyConflict, InvalidRequest
from nfcpay.server.store import Cursor, Tx

MAX_KEY_LENGTH = 64


@dataclass(frozen=True, slots=True)
class Stored:
    status_code: int
    response: dict[str, Any]


def check_key(key: str | None) -> str:
    if not key:
        raise InvalidRequest("this call needs an Idempotency-Key header", field="Idempotency-Key")
    if len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidRequest(
            f"Idempotency-Key must be at most {MAX_KEY_LENGTH} printable ASCII characters",
            field="Idempotency-Key",
        )
    return key


def request_hash(path: str, body: dict[str, Any]) -> bytes:
    """A digest of what the request asks for: its path and its canonical JSON body."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(path.encode() + b"\0" + canonical).digest()


def claim(tx: Tx, merchant_id: str, key: str, digest: bytes, now_us: int) -> Stored | None:
    """Claim ``key``; return the stored answer if an earlier request already completed it."""
    return claimed(tx, send_claim(tx, merchant_id, key, now_us, digest), merchant_id, key, digest)


def send_claim(tx: Tx, merchant_id: str, key: str, now_us: int, digest: bytes) -> Cursor:
    """The first half of :func:`claim`: the claim's INSERT, whose answer :func:`claimed` reads
    (in a pipeline, later)."""
    return tx.send(
        "INSERT INTO idempotency_keys (merchant_id, idem_key, request_hash, status_code, "
        "response, created_at) VALUES (?, ?, ?, 0, '', ?) "
        "ON CONFLICT (merchant_id, idem_key) DO NOTHING",
        (merchant_id, key, digest, now_us),
    )


def claimed(tx: Tx, cursor: Cursor, merchant_id: str, key: str, digest: bytes) -> Stored | None:
    """The second half of :func:`claim`, once ``cursor`` (:func:`send_claim`'s) has its answer."""
    if cursor.rowcount == 1:
        return None
    row = tx.one(
        "SELECT request_hash, status_code, response FROM idempotency_keys "
        "WHERE merchant_id = ? AND idem_key = ?",
        (merchant_id, key),
    )
    if row is None:
        raise RuntimeError("idempotency row vanished between insert and select")
    if bytes(row["request_hash"]) != digest:
        raise IdempotencyConflict(
            f"Idempotency-Key {key!r} was already used for a different request; "
            "use a fresh key for a new payment or refund"
        )
    return Stored(int(row["status_code"]), json.loads(row["response"]))


def complete(
    tx: Tx, merchant_id: str, key: str, status_code: int, response: dict[str, Any]
) -> None:
    tx.execute(
        "UPDATE idempotency_keys SET status_code = ?, response = ? "
        "WHERE merchant_id = ? AND idem_key = ?",
        (status_code, json.dumps(response), merchant_id, key),
    )


def release(tx: Tx, merchant_id: str, key: str) -> None:
    """Forget a claim: the request was declined, and declines store no idempotency record."""
    tx.execute(
        "DELETE FROM idempotency_keys WHERE merchant_id = ? AND idem_key = ?", (merchant_id, key)
    )
