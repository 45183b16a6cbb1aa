"""A merchant's categories: the purposes its payments may be made for.

They are set at registration and changed only by the merchant's own terminal, in a signed
request of its own (``PUT /v1/merchants/me/categories``); every change is logged with who
made it, when, and the set before and after. The first category is the primary one: the
purpose of a payment whose request names none (kept in ``merchants.category`` too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nfcpay.server.runtime import Caller
from nfcpay.server.services import payments
from nfcpay.server.services.formats import dump_list, iso, load_list
from nfcpay.server.store import Cursor, Tx


def categories(tx: Tx, merchant_id: str) -> list[str]:
    """The merchant's categories, primary first."""
    return categories_in(send_categories(tx, merchant_id))


def send_categories(tx: Tx, merchant_id: str) -> Cursor:
    """Ask for the merchant's categories; :func:`categories_in` reads the answer."""
    return tx.send(
        "SELECT category FROM merchant_categories WHERE merchant_id = ? ORDER BY ordinal",
        (merchant_id,),
    )


def categories_in(cursor: Cursor) -> list[str]:
    return [row["category"] for row in cursor.fetchall()]


def record(
    tx: Tx, now_us: int, merchant_id: str, terminal_id: str, new: Sequence[str]
) -> list[str]:
    """Make ``new`` the merchant's categories and log the change by ``terminal_id``; returns
    the set before."""
    old = categories(tx, merchant_id)
    tx.execute("DELETE FROM merchant_categories WHERE merchant_id = ?", (merchant_id,))
    tx.executemany(
        "INSERT INTO merchant_categories (merchant_id, ordinal, category) VALUES (?, ?, ?)",
        [(merchant_id, ordinal, category) for ordinal, category in enumerate(new)],
    )
    tx.execute("UPDATE merchants SET category = ? WHERE merchant_id = ?", (new[0], merchant_id))
    tx.execute(
        "INSERT INTO merchant_category_changes (merchant_id, terminal_id, old_categories, "
        "new_categories, changed_at) VALUES (?, ?, ?, ?, ?)",
        (merchant_id, terminal_id, dump_list(old), dump_list(new), now_us),
    )
    return old


def change(tx: Tx, now_us: int, caller: Caller, new: Sequence[str]) -> dict[str, Any]:
    """The calling merchant terminal replaces its merchant's categories (the same set again
    changes and logs nothing, so a retried request is harmless)."""
    merchant_id = payments.require_merchant(caller, "change a merchant's categories")
    if categories(tx, merchant_id) != list(new):
        record(tx, now_us, merchant_id, caller.terminal_id, new)
    return view(tx, merchant_id)


def view(tx: Tx, merchant_id: str) -> dict[str, Any]:
    """The merchant's categories and every logged change, oldest first."""
    rows = tx.all(
        "SELECT terminal_id, old_categories, new_categories, changed_at "
        "FROM merchant_category_changes WHERE merchant_id = ? ORDER BY seq",
        (merchant_id,),
    )
    changes = [
        {
            "terminal_id": row["terminal_id"],
            "old": load_list(row["old_categories"]),
            "new": load_list(row["new_categories"]),
            "changed_at": iso(row["changed_at"]),
        }
        for row in rows
    ]
    return {
        "merchant_id": merchant_id,
        "categories": categories(tx, merchant_id),
        "changes": changes,
    }


def mine(tx: Tx, caller: Caller) -> dict[str, Any]:
    return view(tx, payments.require_merchant(caller, "see a merchant's categories"))
