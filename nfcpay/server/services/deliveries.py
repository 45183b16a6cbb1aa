"""Grants sent through the server (patent [0047]): the owner names the target terminal and
the server keeps the hand-off record for it until it has been fetched and acknowledged.

The record is byte for byte the NDEF message a tap would carry (a
:class:`~nfcpay.records.GrantRecord` with the usage-auth for the one target), so the target
decodes and checks it as it does a tapped grant, and the checks at the counter are the same.
Before keeping it, the server checks that it is the owner's grant, bound to the named
target, and that its usage-auth is the grant's for that target (:func:`record_problem`, pure).
It is stored encrypted with the field cipher, like auth codes, and never logged.

Delivery is at least once: :func:`inbox` and :func:`get` hand the same record to the target
as often as it asks, until :func:`ack`; then the record is deleted (the row only remembers
that it was delivered, so a repeated acknowledgement is answered alike) and the owner is
notified (``grant_delivered``). Revoking the grant first withdraws it (:func:`withdraw`).
Every terminal but the target and the owner gets the 404 of a delivery that does not exist;
only the target ever gets the record.
"""

from __future__ import annotations

import hmac
from typing import Any

from nfcpay import crypto
from nfcpay.errors import Conflict, DecodeError, InvalidRequest, NotFound
from nfcpay.records import GrantRecord, decode_one
from nfcpay.server.runtime import Caller, Runtime
from nfcpay.server.schemas import DeliveryIn
from nfcpay.server.services import grants, notifications
from nfcpay.server.services.formats import iso
from nfcpay.server.store import Row, Tx

#: The most pending deliveries one fetch returns (the oldest first).
PAGE_SIZE = 20

_COLUMNS = (
    "d.delivery_id, d.grant_id, d.owner_terminal, d.target_terminal, d.status, d.record_enc, "
    "d.created_at, d.delivered_at, o.label AS owner_label, t.label AS target_label"
)
_FROM = (
    "FROM deliveries d JOIN terminals o ON o.terminal_id = d.owner_terminal "
    "JOIN terminals t ON t.terminal_id = d.target_terminal"
)


def record_problem(record: GrantRecord, grant: Row, to: str, usage_auth: bytes) -> str | None:
    """What is wrong with ``record`` as the hand-off of ``grant`` to terminal ``to`` (None:
    nothing). ``usage_auth`` is the grant's for ``to``, as the server computes it; it is
    compared in constant time."""
    gid = grant["grant_id"]
    if record.grant_id != gid:
        return f"the record carries grant {record.grant_id}, not {gid}"
    if record.issuing_terminal != grant["issuing_terminal"]:
        return f"the record names {record.issuing_terminal} as its issuer, not the grant's owner"
    if record.allowed_terminal != to:
        return f"the record is bound to {record.allowed_terminal}, not to {to}"
    if (record.virtual_card_number, record.currency) != (
        grant["virtual_card_number"],
        grant["currency"],
    ):
        return f"the record's virtual card number or currency is not grant {gid}'s"
    if not hmac.compare_digest(record.usage_auth, usage_auth):
        return f"the record's usage-auth is not grant {gid}'s for {to}"
    return None


def parse_record(text: str) -> GrantRecord:
    """The hand-off record in a request (base64url of the NDEF message); InvalidRequest
    naming what is wrong, or which side's nfcpay to upgrade."""
    try:
        return decode_one(crypto.b64d(text), GrantRecord)
    except ValueError:
        raise InvalidRequest("record: not base64url", field="record") from None
    except DecodeError as exc:
        raise InvalidRequest(f"record: {exc.message}", code=exc.code, field="record") from None


def send(tx: Tx, rt: Runtime, caller: Caller, body: DeliveryIn) -> tuple[int, dict[str, Any]]:
    """Keep ``body``'s record for its target: 201 with the new delivery, or 200 with the
    one already waiting for that target (a retried send changes nothing)."""
    grant = grants.load_issued(tx, caller, body.grant_id)
    record = parse_record(body.record)
    existing = tx.one(f"SELECT {_COLUMNS} {_FROM} WHERE d.grant_id = ?", (body.grant_id,))
    if existing is not None:
        return 200, _resend(existing, body)
    status = grants.shown_status(grant, rt.now_us())
    if status != "active":
        raise Conflict(
            f"grant {body.grant_id} is {status}: there is nothing to send",
            code=f"grant_{status}",
        )
    _check_target(tx, body.grant_id, body.to)
    problem = record_problem(record, grant, body.to, grants.usage_auth_for(tx, rt, grant, body.to))
    if problem is not None:
        raise InvalidRequest(f"{problem}: nothing was sent", code="record_mismatch", field="record")
    delivery_id = crypto.new_id("d")
    tx.execute(
        "INSERT INTO deliveries (delivery_id, grant_id, owner_terminal, target_terminal, "
        "status, record_enc, created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
        (
            delivery_id,
            body.grant_id,
            caller.terminal_id,
            body.to,
            rt.cipher.encrypt(body.record, _context(delivery_id)),
            rt.now_us(),
        ),
    )
    return 201, _view(_load(tx, delivery_id), rt, caller)


def _resend(existing: Row, body: DeliveryIn) -> dict[str, Any]:
    """A send of a grant already sent: the same delivery if it still waits for the same
    target; otherwise a Conflict saying why nothing changes."""
    gid, target = body.grant_id, existing["target_terminal"]
    if target != body.to:
        raise Conflict(
            f"grant {gid} was already sent to {existing['target_label']} ({target})",
            code="already_sent",
        )
    if existing["status"] == "delivered":
        raise Conflict(
            f"grant {gid} was already delivered to {existing['target_label']} ({target}) at "
            f"{iso(existing['delivered_at'])}",
            code="already_delivered",
        )
    return _public(existing)


def _check_target(tx: Tx, grant_id: str, to: str) -> None:
    role = tx.scalar("SELECT role FROM terminals WHERE terminal_id = ?", (to,))
    if role is None:
        raise InvalidRequest(f"no terminal {to}", code="terminal_not_found", field="to")
    if role != "target":
        raise InvalidRequest(
            f"{to} is a {role} terminal: only a target terminal fetches grants", field="to"
        )
    if to not in grants.allowed_terminals(tx, grant_id):
        raise InvalidRequest(
            f"grant {grant_id} is not bound to {to}: issue one for it (`user send --to {to}`)",
            code="terminal_not_allowed",
            field="to",
        )


def inbox(tx: Tx, rt: Runtime, caller: Caller) -> list[dict[str, Any]]:
    """The deliveries waiting for the caller, oldest first, each with its record."""
    rows = tx.all(
        f"SELECT {_COLUMNS} {_FROM} WHERE d.target_terminal = ? AND d.status = 'pending' "
        f"ORDER BY d.created_at, d.delivery_id LIMIT {PAGE_SIZE}",
        (caller.terminal_id,),
    )
    return [_view(row, rt, caller) for row in rows]


def get(tx: Tx, rt: Runtime, caller: Caller, delivery_id: str) -> dict[str, Any]:
    """One delivery: with its record for its target while it waits; without for its owner."""
    return _view(_visible(tx, caller, delivery_id), rt, caller)


def ack(tx: Tx, rt: Runtime, caller: Caller, delivery_id: str) -> dict[str, Any]:
    """The target kept the record: delete it and tell the owner. Repeating it changes
    nothing and answers alike."""
    row = _visible(tx, caller, delivery_id, lock=True, target_only=True)
    if row["status"] == "pending":
        now = rt.now_us()
        tx.execute(
            "UPDATE deliveries SET status = 'delivered', record_enc = NULL, delivered_at = ? "
            "WHERE delivery_id = ?",
            (now, delivery_id),
        )
        notifications.notify(
            tx,
            now,
            row["owner_terminal"],
            "grant_delivered",
            grant_id=row["grant_id"],
            terminal_id=row["target_terminal"],
            facts={"terminal_label": row["target_label"]},
        )
        row = _load(tx, delivery_id)
    return _view(row, rt, caller)


def withdraw(tx: Tx, grant_id: str) -> None:
    """The grant was revoked: a delivery still waiting for its target is deleted."""
    tx.execute("DELETE FROM deliveries WHERE grant_id = ? AND status = 'pending'", (grant_id,))


def _visible(
    tx: Tx, caller: Caller, delivery_id: str, *, lock: bool = False, target_only: bool = False
) -> Row:
    """The delivery if ``caller`` is its target (or, unless ``target_only``, its owner);
    anyone else gets the 404 of one that does not exist. It is locked (``lock``) only once
    it proved to be the caller's, so a stranger cannot make its target wait."""
    row = tx.one(f"SELECT {_COLUMNS} {_FROM} WHERE d.delivery_id = ?", (delivery_id,))
    if row is None or caller.terminal_id not in _readers(row, target_only):
        raise NotFound(
            f"no delivery {delivery_id} for this terminal (a revoked grant's is withdrawn)",
            code="delivery_not_found",
        )
    if not lock:
        return row
    tx.one(f"SELECT status FROM deliveries WHERE delivery_id = ?{tx.for_update}", (delivery_id,))
    return _load(tx, delivery_id)


def _readers(row: Row, target_only: bool) -> set[str]:
    readers = {row["target_terminal"]}
    return readers if target_only else readers | {row["owner_terminal"]}


def _load(tx: Tx, delivery_id: str) -> Row:
    row = tx.one(f"SELECT {_COLUMNS} {_FROM} WHERE d.delivery_id = ?", (delivery_id,))
    if row is None:
        raise NotFound(f"no delivery {delivery_id}", code="delivery_not_found")
    return row


def _context(delivery_id: str) -> str:
    return f"delivery:{delivery_id}"


def _public(row: Row) -> dict[str, Any]:
    return {
        "delivery_id": row["delivery_id"],
        "grant_id": row["grant_id"],
        "from": {"terminal_id": row["owner_terminal"], "label": row["owner_label"]},
        "to": {"terminal_id": row["target_terminal"], "label": row["target_label"]},
        "status": row["status"],
        "created_at": iso(row["created_at"]),
        "delivered_at": iso(row["delivered_at"]),
    }


def _view(row: Row, rt: Runtime, caller: Caller) -> dict[str, Any]:
    """The delivery as ``caller`` sees it: only its target gets the record, while it waits."""
    out = _public(row)
    if caller.terminal_id == row["target_terminal"] and row["status"] == "pending":
        out["record"] = rt.cipher.decrypt(bytes(row["record_enc"]), _context(row["delivery_id"]))
    return out
