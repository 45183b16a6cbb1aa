"""Owner notifications: own only, paged by `after`, long-poll returns on news."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from nfcpay.errors import ApiError
from nfcpay.server.services import notifications
from tests.server.conftest import Api


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
        news = scene.owner.client.notifications(wait=10)
    finally:
        timer.join()
    assert [n["kind"] for n in news] == ["grant_used"]
    assert time.monotonic() - started < 5


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
