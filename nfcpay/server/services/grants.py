"""Grant issuance (patent FIG. 5): temporary payment info — a virtual card number mapped to a
funding source, bound to allowed terminals and restricted by usage rights — and its auth code,
which the API returns exactly once. The server keeps the auth code encrypted (context = grant
id) so it can recompute usage-auth values.

Stored status is ``active``, ``revoked`` or ``locked``; ``exhausted`` (no uses or amount left)
and ``expired`` (past ``valid_until``) are derived when a grant is shown, so they can never
disagree with the remaining figures.

A grant issued to whoever tapped (``tap_fingerprint``) is handed over in that tap, but the
tapping terminal only announced itself: a relay with a terminal of its own could have tapped
instead of the person the owner sees. So it is issued *unconfirmed* (``confirm_by`` set) and
pays nothing until its owner, having compared the tapping terminal's key fingerprint with
the one on the target's screen, confirms it (:func:`confirm`) within
:data:`CONFIRM_WINDOW_S`; one left unconfirmed past that counts as revoked. The claimed
fingerprint must be the registered key's, so a relay cannot show someone else's.
"""

from __future__ import annotations

from typing import Any

from nfcpay import crypto
from nfcpay.errors import Conflict, Forbidden, InvalidRequest, NotFound
from nfcpay.server.runtime import Caller, Runtime
from nfcpay.server.schemas import AllowanceIn, GrantIn, RightsIn
from nfcpay.server.services import allowances, bills, deliveries, notifications, sources
from nfcpay.server.services.formats import dump_list, iso, load_list, to_us
from nfcpay.server.store import Row, Tx

#: How many times issuance draws a fresh virtual card number after a collision.
_NUMBER_ATTEMPTS = 8
#: How long a grant issued in a tap waits for its owner's confirmation (server time).
CONFIRM_WINDOW_S = 120

GRANT_COLUMNS = (
    "grant_id, virtual_card_number, source_id, issuing_terminal, currency, amount_cap, "
    "max_uses, per_use_cap, valid_from, valid_until, purposes, regions, merchants, bill_id, "
    "remaining_amount, remaining_uses, status, confirm_by, created_at, allowance_period, "
    "allowance_amount, allowance_zone, interval_start, interval_spent"
)


def issue(tx: Tx, rt: Runtime, caller: Caller, body: GrantIn) -> dict[str, Any]:
    if caller.role not in sources.OWNER_ROLES:
        raise Forbidden("only user and target terminals issue grants")
    now = rt.now_us()
    source = sources.load_owned(tx, caller, body.source_id)
    _check_source(source, body, now)
    _check_rights(body.rights, now)
    if body.bill_id is not None:
        bills.require_open(tx, body.bill_id, body.currency)
    allowed = list(dict.fromkeys(body.allowed_terminals))
    _check_terminals(tx, allowed)
    tapped = _check_tapped(tx, allowed, body.tap_fingerprint)
    confirm_by = now + CONFIRM_WINDOW_S * 1_000_000 if tapped else None
    grant_id = crypto.new_id("g")
    auth_code = crypto.new_auth_code()
    rights = body.rights
    tx.execute(
        "INSERT INTO grants (grant_id, virtual_card_number, source_id, issuing_terminal, "
        "currency, auth_code_enc, amount_cap, max_uses, per_use_cap, valid_from, valid_until, "
        "purposes, regions, merchants, bill_id, remaining_amount, remaining_uses, status, "
        "confirm_by, created_at, allowance_period, allowance_amount, allowance_zone) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?)",
        (
            grant_id,
            _unused_virtual_number(tx),
            body.source_id,
            caller.terminal_id,
            body.currency,
            rt.cipher.encrypt(crypto.b64e(auth_code), grant_id),
            rights.amount_cap,
            rights.max_uses,
            rights.per_use_cap,
            to_us(rights.valid_from),
            to_us(rights.valid_until),
            dump_list(rights.purposes),
            dump_list(rights.regions),
            dump_list(rights.merchants),
            body.bill_id,
            rights.amount_cap,
            rights.max_uses,
            confirm_by,
            now,
            *_allowance_columns(rights.allowance),
        ),
    )
    tx.executemany(
        "INSERT INTO grant_terminals (grant_id, terminal_id) VALUES (?, ?)",
        [(grant_id, terminal) for terminal in allowed],
    )
    answer = {"grant": _get(tx, rt, caller, grant_id), "auth_code": crypto.b64e(auth_code)}
    return answer | ({"tapped": tapped} if tapped else {})


def _allowance_columns(allowance: AllowanceIn | None) -> tuple[str | None, int | None, str | None]:
    if allowance is None:
        return None, None, None
    return allowance.period.value, allowance.amount, allowance.time_zone


def _check_tapped(tx: Tx, allowed: list[str], claimed: str | None) -> dict[str, str] | None:
    """For a grant issued to whoever tapped: that terminal as the owner must compare it
    (registered label and key fingerprint), once its hello's ``claimed`` fingerprint proved
    to be its registered key's."""
    if claimed is None:
        return None
    if len(allowed) != 1:
        raise InvalidRequest(
            "a grant issued in a tap is for the one terminal that tapped",
            field="allowed_terminals",
        )
    row = tx.one(
        "SELECT terminal_id, label, public_key FROM terminals WHERE terminal_id = ?", (allowed[0],)
    )
    if row is None:  # _check_terminals found it; kept for the type checker
        raise NotFound(f"no terminal {allowed[0]}", code="terminal_not_found")
    registered = crypto.key_fingerprint(bytes(row["public_key"]))
    if not crypto.fingerprints_match(bytes.fromhex(claimed), registered):
        raise Conflict(
            f"the key fingerprint terminal {row['terminal_id']} showed in the tap is not its "
            "registered key's: the device that tapped is not that terminal; no grant was issued",
            code="key_fingerprint_mismatch",
        )
    return {"terminal_id": row["terminal_id"], "label": row["label"], "key_fingerprint": claimed}


def _check_source(source: Row, body: GrantIn, now: int) -> None:
    if source["status"] != "active":
        raise Conflict(
            f"funding source {source['source_id']} is {source['status']}",
            code=f"source_{source['status']}",
        )
    if source["kind"] == "card" and sources.card_expired(source["expiry"], now):
        raise Conflict(f"card {source['card_masked']} has expired", code="source_expired")
    if source["currency"] != body.currency:
        raise InvalidRequest(
            f"the funding source is in {source['currency']}, the grant in {body.currency}",
            code="currency_mismatch",
            field="currency",
        )


def _check_rights(rights: RightsIn, now: int) -> None:
    valid_from, valid_until = to_us(rights.valid_from), to_us(rights.valid_until)
    if valid_until is not None and valid_until <= now:
        raise InvalidRequest("valid_until is in the past", field="rights.valid_until")
    if valid_from is not None and valid_until is not None and valid_from >= valid_until:
        raise InvalidRequest("valid_from must be before valid_until", field="rights.valid_from")
    if rights.per_use_cap is not None and rights.per_use_cap > rights.amount_cap:
        raise InvalidRequest("per_use_cap cannot exceed amount_cap", field="rights.per_use_cap")
    if rights.allowance is not None and rights.allowance.amount > rights.amount_cap:
        raise InvalidRequest(
            "the allowance cannot exceed amount_cap, the most the grant pays in all",
            field="rights.allowance.amount",
        )


def _check_terminals(tx: Tx, allowed: list[str]) -> None:
    for terminal_id in allowed:
        role = tx.scalar("SELECT role FROM terminals WHERE terminal_id = ?", (terminal_id,))
        if role is None:
            raise InvalidRequest(
                f"no terminal {terminal_id}", code="terminal_not_found", field="allowed_terminals"
            )
        if role == "merchant":
            raise InvalidRequest(
                f"{terminal_id} is a merchant terminal; grants go to user or target terminals",
                field="allowed_terminals",
            )


def _unused_virtual_number(tx: Tx) -> str:
    """A fresh virtual number. Real cards are refused in the virtual range, so only other
    grants can collide; the UNIQUE constraint backs this check up."""
    for _ in range(_NUMBER_ATTEMPTS):
        number = crypto.new_virtual_card_number()
        if not tx.one("SELECT 1 AS x FROM grants WHERE virtual_card_number = ?", (number,)):
            return number
    raise RuntimeError("could not draw an unused virtual card number")


def list_visible(tx: Tx, rt: Runtime, caller: Caller) -> dict[str, Any]:
    """Grants the caller issued, then grants it may present (limited view)."""
    prefixed = ", ".join(f"g.{c}" for c in GRANT_COLUMNS.split(", "))
    rows = tx.all(
        f"SELECT {GRANT_COLUMNS} FROM grants WHERE issuing_terminal = ? ORDER BY created_at",
        (caller.terminal_id,),
    ) + tx.all(
        f"SELECT {prefixed} FROM grants g JOIN grant_terminals a ON a.grant_id = g.grant_id "
        "WHERE a.terminal_id = ? AND g.issuing_terminal <> ? ORDER BY g.created_at",
        (caller.terminal_id, caller.terminal_id),
    )
    return {"grants": [_view(tx, row, caller, rt.now_us()) for row in rows]}


def get(tx: Tx, rt: Runtime, caller: Caller, grant_id: str) -> dict[str, Any]:
    return _get(tx, rt, caller, grant_id)


def _get(
    tx: Tx, rt: Runtime, caller: Caller, grant_id: str, *, lock: bool = False
) -> dict[str, Any]:
    row = _load_visible(tx, caller, grant_id, lock=lock)
    return _view(tx, row, caller, rt.now_us())


def _load_visible(tx: Tx, caller: Caller, grant_id: str, *, lock: bool = False) -> Row:
    row = tx.one(
        f"SELECT {GRANT_COLUMNS} FROM grants WHERE grant_id = ?" + (tx.for_update if lock else ""),
        (grant_id,),
    )
    if row is not None and (
        row["issuing_terminal"] == caller.terminal_id
        or tx.one(
            "SELECT 1 AS x FROM grant_terminals WHERE grant_id = ? AND terminal_id = ?",
            (grant_id, caller.terminal_id),
        )
    ):
        return row
    raise NotFound(f"no grant {grant_id} visible to you", code="grant_not_found")


def load_issued(tx: Tx, caller: Caller, grant_id: str) -> Row:
    """Grant ``grant_id`` locked, if the caller issued it (404 if it cannot see it, 403 if
    it only holds it)."""
    row = _load_visible(tx, caller, grant_id, lock=True)
    if row["issuing_terminal"] != caller.terminal_id:
        raise Forbidden(f"only the issuing terminal can send grant {grant_id}")
    return row


def usage_auth_for(tx: Tx, rt: Runtime, row: Row, terminal_id: str) -> bytes:
    """Grant ``row``'s usage-auth for ``terminal_id``, from its stored auth code."""
    sealed = tx.scalar("SELECT auth_code_enc FROM grants WHERE grant_id = ?", (row["grant_id"],))
    code = crypto.b64d(rt.cipher.decrypt(bytes(sealed), row["grant_id"]))
    return crypto.usage_auth(code, row["grant_id"], row["issuing_terminal"], terminal_id)


def revoke(tx: Tx, rt: Runtime, caller: Caller, grant_id: str) -> dict[str, Any]:
    """Revoke a grant, withdrawing it if it still waits for its target on the server."""
    row = _load_visible(tx, caller, grant_id, lock=True)
    if row["issuing_terminal"] != caller.terminal_id:
        raise Forbidden("only the issuing terminal can revoke a grant")
    if row["status"] != "revoked":
        tx.execute("UPDATE grants SET status = 'revoked' WHERE grant_id = ?", (grant_id,))
        deliveries.withdraw(tx, grant_id)
        notifications.notify(
            tx,
            rt.now_us(),
            caller.terminal_id,
            "grant_revoked",
            f"grant {grant_id} was revoked",
            grant_id=grant_id,
        )
    return _get(tx, rt, caller, grant_id)


def confirm(tx: Tx, rt: Runtime, caller: Caller, grant_id: str) -> dict[str, Any]:
    """The owner confirms the terminal that tapped: the grant pays from now on. Confirming
    a grant that needs no confirmation (bound ahead, or confirmed already) changes nothing."""
    row = _load_visible(tx, caller, grant_id, lock=True)
    if row["issuing_terminal"] != caller.terminal_id:
        raise Forbidden("only the issuing terminal can confirm a grant")
    if row["status"] != "active":
        raise Conflict(
            f"grant {grant_id} is {row['status']}: it cannot be confirmed",
            code=f"grant_{row['status']}",
        )
    if row["confirm_by"] is not None and rt.now_us() >= row["confirm_by"]:
        raise Conflict(
            f"grant {grant_id} was not confirmed within {CONFIRM_WINDOW_S} s of the tap and is "
            "withdrawn: give a new one",
            code="confirmation_lapsed",
        )
    if row["confirm_by"] is not None:
        tx.execute("UPDATE grants SET confirm_by = NULL WHERE grant_id = ?", (grant_id,))
    return _get(tx, rt, caller, grant_id)


def allowed_terminals(tx: Tx, grant_id: str) -> list[str]:
    rows = tx.all(
        "SELECT terminal_id FROM grant_terminals WHERE grant_id = ? ORDER BY terminal_id",
        (grant_id,),
    )
    return [row["terminal_id"] for row in rows]


def _parties(tx: Tx, row: Row, caller: Caller) -> tuple[str, list[dict[str, Any]]]:
    """The grant's owner's label, and its allowed terminals, each with its label where the
    caller is a party with it (:mod:`.profiles`): the owner reads all of them, a terminal
    the grant is bound to reads only its own (None for the others)."""
    rows = tx.all(
        "SELECT a.terminal_id, t.label, o.label AS owner_label FROM grant_terminals a "
        "JOIN terminals t ON t.terminal_id = a.terminal_id "
        "JOIN terminals o ON o.terminal_id = ? WHERE a.grant_id = ? ORDER BY a.terminal_id",
        (row["issuing_terminal"], row["grant_id"]),
    )
    owner = row["issuing_terminal"] == caller.terminal_id
    allowed = [
        {
            "terminal_id": r["terminal_id"],
            "label": r["label"] if owner or r["terminal_id"] == caller.terminal_id else None,
        }
        for r in rows
    ]
    return rows[0]["owner_label"], allowed


def shown_status(row: Row, now_us: int) -> str:
    if row["status"] != "active":
        return str(row["status"])
    if row["confirm_by"] is not None:
        return "revoked" if now_us >= row["confirm_by"] else "unconfirmed"
    if row["valid_until"] is not None and now_us >= row["valid_until"]:
        return "expired"
    if row["remaining_uses"] == 0 or row["remaining_amount"] == 0:
        return "exhausted"
    return "active"


def _view(tx: Tx, row: Row, caller: Caller, now_us: int) -> dict[str, Any]:
    rights = {
        "amount_cap": row["amount_cap"],
        "max_uses": row["max_uses"],
        "per_use_cap": row["per_use_cap"],
        "valid_from": iso(row["valid_from"]),
        "valid_until": iso(row["valid_until"]),
        "purposes": load_list(row["purposes"]),
        "regions": load_list(row["regions"]),
        "merchants": load_list(row["merchants"]),
        "allowance": None,
    }
    limit = allowances.of(row, now_us)
    issuing_label, allowed = _parties(tx, row, caller)
    out: dict[str, Any] = {
        "grant_id": row["grant_id"],
        "virtual_card_number": row["virtual_card_number"],
        "issuing_terminal": row["issuing_terminal"],
        "issuing_label": issuing_label,
        "allowed_terminals": [a["terminal_id"] for a in allowed],
        "allowed": allowed,
        "currency": row["currency"],
        "rights": rights,
        "bill_id": row["bill_id"],
        "remaining_amount": row["remaining_amount"],
        "remaining_uses": row["remaining_uses"],
        "status": shown_status(row, now_us),
        "confirm_by": iso(row["confirm_by"]),
        "created_at": iso(row["created_at"]),
    }
    if limit is not None:
        rights["allowance"] = {
            "period": limit.period.value,
            "amount": limit.amount,
            "time_zone": limit.zone.key,
        }
        out["allowance_left"] = limit.left
        out["allowance_renews_at"] = iso(limit.end_us)
    if row["issuing_terminal"] == caller.terminal_id:
        out["source_id"] = row["source_id"]
    return out
