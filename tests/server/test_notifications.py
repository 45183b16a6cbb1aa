"""Owner notifications: own only, paged by `after`, long-poll returns on news."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from nfcpay.errors import ApiError
from nfcpay.server.routes import MAX_WAIT_S
from nfcpay.server.services import notifications
from tests.support.harness import Api


def test_a_payment_notification_names_the_target_and_the_merchant(api: Api) -> None:
    """The text reads with the target's label and the merchant's name beside their short
    ids; the answer keeps the ids and adds the names."""
    scene = api.scene(max_uses=3)
    scene.pay(1_200)
    [note] = scene.owner.client.notifications()
    target, shop = scene.target, scene.merchant
    assert note["message"] == (
        f"{target.info['label']} ({target.terminal_id[:6]}…) paid 1,200 KRW at Test Bistro "
        f"({shop.merchant_id[:6]}…) with grant {scene.grant_id}"
    )
    assert (note["terminal_id"], note["terminal_label"]) == (
        target.terminal_id,
        target.info["label"],
    )
    assert (note["merchant_id"], note["merchant_name"]) == (shop.merchant_id, "Test Bistro")


def test_a_stored_notification_without_names_still_reads(api: Api) -> None:
    """A notification written before names were added keeps its words; its answer still
    gets the parties' names."""
    scene = api.scene()
    owner, gid = scene.owner.terminal_id, scene.grant_id
    fields = {
        "grant_id": gid,
        "amount": 500,
        "currency": "KRW",
        "merchant_id": scene.merchant.merchant_id,
        "terminal_id": scene.target.terminal_id,
    }
    old = f"grant {gid} paid 500 KRW at {scene.merchant.merchant_id}"
    api.runtime.db.run(lambda tx: notifications.notify(tx, 0, owner, "grant_used", old, **fields))
    [note] = scene.owner.client.notifications()
    assert note["message"] == old
    assert (note["merchant_name"], note["terminal_label"]) == (
        "Test Bistro",
        scene.target.info["label"],
    )


def test_after_pages_and_only_own(api: Api) -> None:
    scene = api.scene(max_uses=3)
    scene.pay(100)
    first = scene.owner.client.notifications()
    assert [n["kind"] for n in first] == ["grant_used"]
    assert scene.owner.client.notifications(after=first[-1]["notification_id"]) == []
    scene.pay(200)
    newer = scene.owner.client.notifications(after=first[-1]["notification_id"])
    assert [(n["kind"], n["amount"]) for n in newer] == [("grant_used", 200)]
    assert scene.target.client.notifications() == []
    with pytest.raises(ApiError) as caught:
        scene.target.client.notifications(after=first[-1]["notification_id"])
    assert (caught.value.status, caught.value.field) == (422, "after")


def test_long_poll_returns_when_news_arrives(api: Api) -> None:
    scene = api.scene(max_uses=3)
    timer = threading.Timer(0.3, lambda: scene.pay(100))
    started = time.monotonic()
    timer.start()
    try:
        news = scene.owner.client.notifications(wait=MAX_WAIT_S)
    finally:
        timer.join()
    assert [n["kind"] for n in news] == ["grant_used"]
    assert time.monotonic() - started < MAX_WAIT_S / 2, "the poll ended on the news"


def test_long_poll_times_out_empty(api: Api) -> None:
    user = api.terminal()
    started = time.monotonic()
    assert user.client.notifications(wait=0.5) == []
    assert time.monotonic() - started >= 0.4


def test_wait_is_bounded(api: Api) -> None:
    user = api.terminal()
    with pytest.raises(ApiError) as caught:
        user.client.notifications(wait=31)
    assert (caught.value.status, caught.value.field) == (422, "wait")


def test_an_owners_stream_commits_in_seq_order(api: Api) -> None:
    """A reader pages with ``seq > cursor``: a notification for the same owner written while
    another is uncommitted must take its number after that one commits, or a reader that
    already passed the later number would never see the earlier one."""
    owner = api.terminal("user").terminal_id
    db = api.runtime.db
    first_written, release = threading.Event(), threading.Event()

    def write(message: str, hold: bool) -> None:
        def work(tx: Any) -> None:
            notifications.notify(tx, 0, owner, "grant_used", message)
            if hold:
                first_written.set()
                assert release.wait(10)

        db.run(work)

    first = threading.Thread(target=write, args=("first", True))
    first.start()
    assert first_written.wait(10)
    second = threading.Thread(target=write, args=("second", False))
    second.start()
    second.join(0.3)
    assert second.is_alive(), "the second writer did not wait for the first to commit"
    release.set()
    first.join(10)
    second.join(10)
    rows = db.run(
        lambda tx: tx.all(
            "SELECT message FROM notifications WHERE owner_terminal = ? ORDER BY seq", (owner,)
        )
    )
    assert [row["message"] for row in rows] == ["first", "second"]


def test_readme_names_every_notification_kind() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert {kind for kind in notifications.KINDS if f"`{kind}`" not in readme} == set()


#: The facts every notification of the payment rules can carry: its columns and its kind's own.
FIELDS = {
    "grant_id": "g_1",
    "amount": 12_000,
    "currency": "KRW",
    "merchant_id": "m_hcyl2k7q",
    "terminal_id": "t_otmc9x4b",
    "bill_id": None,
}
FACTS = {"grant_bill": "b_1", "what": "card limit", "after": 5}
#: The parties' names, as notifications written since they were added carry them.
NAMES = {"merchant_name": "Corner Bistro", "terminal_label": "Mallory"}

TEXTS = [
    (
        "grant_used",
        {},
        "Mallory (t_otmc…) paid 12,000 KRW at Corner Bistro (m_hcyl…) with grant g_1",
    ),
    (
        "grant_used",
        {"bill_id": "b_2"},
        "Mallory (t_otmc…) paid 12,000 KRW (your share of bill b_2) at Corner Bistro (m_hcyl…) "
        "with grant g_1",
    ),
    ("grant_exhausted", {}, "grant g_1 is used up"),
    ("grant_expired", {}, "grant g_1 has expired"),
    ("grant_revoked", {}, "grant g_1 was revoked"),
    ("grant_delivered", {}, "grant g_1 was delivered to Mallory (t_otmc…)"),
    ("grant_locked", {}, "grant g_1 is locked after 5 wrong usage-auth values"),
    (
        "terminal_not_allowed",
        {},
        "Mallory (t_otmc…) tried to pay 12,000 KRW at Corner Bistro (m_hcyl…) with grant g_1",
    ),
    (
        "terminal_not_allowed",
        {"bill_id": "b_2"},
        "Mallory (t_otmc…) tried to pay 12,000 KRW for bill b_2 at Corner Bistro (m_hcyl…) "
        "with grant g_1",
    ),
    (
        "usage_auth_mismatch",
        {},
        "a wrong usage-auth was presented for grant g_1 (12,000 KRW at Corner Bistro (m_hcyl…))",
    ),
    (
        "forged_presentation",
        {"bill_id": "b_2"},
        "a copy of grant g_1 was presented under Mallory (t_otmc…)'s id without its signature "
        "(12,000 KRW for bill b_2 at Corner Bistro (m_hcyl…))",
    ),
    (
        "bill_mismatch",
        {},
        "grant g_1 for bill b_1 was presented for a payment outside any bill (12,000 KRW at "
        "Corner Bistro (m_hcyl…))",
    ),
    (
        "bill_mismatch",
        {"bill_id": "b_2"},
        "grant g_1 for bill b_1 was presented for bill b_2 (12,000 KRW at Corner Bistro (m_hcyl…))",
    ),
    (
        "limit_declined",
        {},
        "a payment of 12,000 KRW at Corner Bistro (m_hcyl…) was declined: card limit too low",
    ),
]

#: Without the names (a caller that has none, facts as they were before names): each party
#: by its whole id, as notifications read before.
TEXTS_WITHOUT_NAMES = [
    ("grant_used", "terminal t_otmc9x4b paid 12,000 KRW at m_hcyl2k7q with grant g_1"),
    ("grant_delivered", "grant g_1 was delivered to terminal t_otmc9x4b"),
    (
        "terminal_not_allowed",
        "terminal t_otmc9x4b tried to pay 12,000 KRW at m_hcyl2k7q with grant g_1",
    ),
    (
        "forged_presentation",
        "a copy of grant g_1 was presented under terminal t_otmc9x4b's id without its signature "
        "(12,000 KRW at m_hcyl2k7q)",
    ),
    ("limit_declined", "a payment of 12,000 KRW at m_hcyl2k7q was declined: card limit too low"),
]


@pytest.mark.parametrize(("kind", "expected"), TEXTS_WITHOUT_NAMES)
def test_a_text_without_the_names_names_the_parties_by_id(kind: str, expected: str) -> None:
    assert notifications.text(kind, FACTS, **FIELDS) == expected


def test_a_name_never_stands_without_its_id() -> None:
    """Labels are self-chosen: whatever a terminal calls itself, the id stands beside it."""
    posing = {"merchant_name": "Corner Bistro", "terminal_label": "Alice (t_r67q…)"}
    said = notifications.text("terminal_not_allowed", FACTS | posing, **FIELDS)
    assert said.startswith("Alice (t_r67q…) (t_otmc…) tried to pay")


@pytest.mark.parametrize(("kind", "changes", "expected"), TEXTS)
def test_each_kind_has_its_text(kind: str, changes: dict[str, Any], expected: str) -> None:
    assert notifications.text(kind, FACTS | NAMES, **{**FIELDS, **changes}) == expected


def test_every_kind_has_a_text() -> None:
    assert {kind for kind, _, _ in TEXTS} == notifications.KINDS == set(notifications.TEXTS)


def test_notify_words_it_by_the_table(api: Api) -> None:
    """Without a message, notify writes the table's text; grants.py's revoke says the same."""
    scene = api.scene()
    owner, gid = scene.owner.terminal_id, scene.grant_id
    api.runtime.db.run(
        lambda tx: notifications.notify(
            tx, 0, owner, "grant_locked", grant_id=gid, facts={"after": 5}
        )
    )
    scene.owner.client.revoke_grant(gid)
    notes = {n["kind"]: n["message"] for n in scene.owner.client.notifications()}
    assert notes == {
        "grant_locked": notifications.text("grant_locked", {"after": 5}, grant_id=gid),
        "grant_revoked": notifications.text("grant_revoked", grant_id=gid),
    }
