"""The three pages in a real headless Chromium, against real processes: a payment server,
``nfcpay ui``, and terminals tapping it over the loopback reader. The page is never
reloaded while it waits: what a tap changes arrives over its event stream."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import click, screenshot, wait_for_text
from tests.support.cli import Cli, finish, free_udp_port, owner_with_card
from tests.support.ui import start_ui

pytestmark = [pytest.mark.slow, pytest.mark.nfc_sim]

#: Installed after the page loaded: a reload would lose the marker; every change of the
#: element ``id`` is recorded with the browser's clock.
WATCH = """
window.nfcpayMarker = 42;
window.nfcpaySeen = [];
new MutationObserver(function () {
  window.nfcpaySeen.push([performance.now(), document.getElementById(arguments[0]).innerText]);
}.bind(null, arguments[0])).observe(document.getElementById(arguments[0]),
  {childList: true, subtree: true, characterData: true});
"""


def by_id(driver: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def not_reloaded(driver: Any) -> bool:
    return bool(driver.execute_script("return window.nfcpayMarker === 42"))


def first_seen(driver: Any, text: str) -> float | None:
    """The browser's time (ms) at which the watched element first showed ``text``."""
    for at, shown in driver.execute_script("return window.nfcpaySeen"):
        if text in shown:
            return float(at)
    return None


def give_by_cli(cli: Cli) -> str:
    give, receive = cli.tap(
        ("user", "user", "give", "--amount", "30,000", "--uses", "2", "--yes"),
        ("target", "target", "receive"),
    )
    assert (give.status, receive.status) == (0, 0), (give, receive)
    return str(give.data["grant"]["grant_id"])


def test_the_counter_shows_approved_without_a_reload_and_the_wallet_the_receipt(
    cli: Cli, browser: Any, screenshots: Path, timings: Callable[[str, float], None]
) -> None:
    owner_with_card(cli)
    cli.init("target", "target")
    cli.init("shop", "merchant")
    give_by_cli(cli)
    device = f"loopback:{free_udp_port()}"
    counter = start_ui(cli, "shop", device=device)

    browser.get(counter.link)
    wait_for_text(browser, "#screen", "Ready")
    by_id(browser, "amount").send_keys("12,000")
    by_id(browser, "charge").click()
    wait_for_text(browser, "#screen", "Tap now")
    wait_for_text(browser, "#screen", "12,000 KRW")
    browser.execute_script(WATCH, "screen")

    started = time.monotonic()
    pay = cli.start("target", "target", "pay", "--timeout", "20", device=device)
    shown = wait_for_text(browser, "#screen", "APPROVED")
    paid = finish(pay)
    assert paid.status == 0 and paid.data["status"] == "approved", paid
    assert not_reloaded(browser)
    wait_for_text(browser, "#payments", paid.data["payment_id"])
    assert by_id(browser, "amount").get_attribute("value") == ""  # ready for the next one
    tapped, approved = first_seen(browser, "presented"), first_seen(browser, "APPROVED")
    if tapped is not None and approved is not None:
        timings("counter: the page shows the tap → it shows APPROVED", approved - tapped)
    timings("counter: `target pay` started → the page shows APPROVED", (shown - started) * 1000)
    screenshot(browser, screenshots, "counter")
    counter.stop()

    wallet = start_ui(cli, "target")
    browser.get(wallet.link)
    wait_for_text(browser, "#held", "18,000 KRW")
    wait_for_text(browser, "#receipts", "approved")
    wait_for_text(browser, "#receipts", paid.data["payment_id"])
    screenshot(browser, screenshots, "wallet")
    wallet.stop()


def test_the_owner_gives_by_tap_and_a_copied_grant_alarms_the_feed(
    cli: Cli, browser: Any, screenshots: Path, timings: Callable[[str, float], None]
) -> None:
    owner_with_card(cli)
    target_id = cli.init("target", "target")
    cli.init("shop", "merchant")
    cli.init("mallory", "target")
    device = f"loopback:{free_udp_port()}"
    owner = start_ui(cli, "user", device=device)

    browser.get(owner.link)
    wait_for_text(browser, "#sources", "411111******1111")
    by_id(browser, "give-amount").send_keys("30,000")
    by_id(browser, "give-uses").clear()
    by_id(browser, "give-uses").send_keys("2")
    by_id(browser, "give-by-tap").click()
    receive = cli.start("target", "target", "receive", "--timeout", "20", device=device)
    wait_for_text(browser, "#give", target_id)  # who tapped, with the fingerprint to compare
    received = finish(receive)
    assert received.status == 0, received
    grant_id = received.data["grant"]["grant_id"]
    click(browser, "confirm-yes")
    wait_for_text(browser, "#give", "Handed over")
    wait_for_text(browser, f"#grant-{grant_id}", "active")
    wait_for_text(browser, f"#grant-{grant_id}", "uses left 2/2")

    browser.execute_script(WATCH, "feed")
    copies = cli.home("mallory") / "grants"
    copies.mkdir(parents=True, exist_ok=True)
    shutil.copy2(cli.home("target") / "grants" / f"{grant_id}.json", copies)
    charge, _pay = cli.tap(
        ("shop", "merchant", "charge", "--amount", "8,000"), ("mallory", "target", "pay")
    )
    assert charge.data["decline_code"] == "terminal_not_allowed", charge
    attempted = time.monotonic()
    shown = wait_for_text(browser, "#feed .alarm", "tried to pay 8,000 KRW")
    assert not_reloaded(browser)
    assert "ALARM" in by_id(browser, "feed").text
    timings("owner: the merchant's decline → the alarm on the page", (shown - attempted) * 1000)
    screenshot(browser, screenshots, "owner")
    owner.stop()


def test_the_owner_revokes_on_the_page_and_a_charge_with_the_grant_is_declined(
    cli: Cli, browser: Any
) -> None:
    owner_with_card(cli)
    cli.init("target", "target")
    cli.init("shop", "merchant")
    grant_id = give_by_cli(cli)
    owner = start_ui(cli, "user")

    browser.get(owner.link)
    wait_for_text(browser, f"#grant-{grant_id}", "active")
    click(browser, f"revoke-{grant_id}")
    wait_for_text(browser, f"#grant-{grant_id}", "revoked")
    wait_for_text(browser, "#flash", grant_id)

    charge, _pay = cli.tap(
        ("shop", "merchant", "charge", "--amount", "5,000"), ("target", "target", "pay")
    )
    assert charge.data["status"] == "declined", charge
    assert charge.data["decline_code"] == "grant_revoked", charge
    owner.stop()


def receive_button(driver: Any) -> str:
    """The id of the first "receive" button in the wallet's inbox."""
    from selenium.webdriver.common.by import By

    button = driver.find_element(By.CSS_SELECTOR, "#inbox button[id^='receive-d_']")
    return str(button.get_attribute("id"))


def test_the_owner_sends_to_a_terminal_and_its_wallet_receives_it_live(
    cli: Cli, browser: Any, timings: Callable[[str, float], None]
) -> None:
    owner_id = owner_with_card(cli)
    target_id = cli.init("target", "target")
    cli.init("shop", "merchant")
    owner, wallet = start_ui(cli, "user"), start_ui(cli, "target")

    browser.get(wallet.link)
    wait_for_text(browser, "#inbox", "Nothing waiting")
    browser.execute_script(WATCH, "inbox")
    wallet_tab = browser.current_window_handle
    browser.switch_to.new_window("tab")
    browser.get(owner.link)
    wait_for_text(browser, "#sources", "411111******1111")
    by_id(browser, "send-to").send_keys(target_id)
    by_id(browser, "send-amount").send_keys("30,000")
    by_id(browser, "send-uses").clear()
    by_id(browser, "send-uses").send_keys("2")
    by_id(browser, "send-to-terminal").click()
    wait_for_text(browser, "#send", "Sent; waiting on the server until it is received: target")
    sent = time.monotonic()
    owner_tab = browser.current_window_handle

    browser.switch_to.window(wallet_tab)
    shown = wait_for_text(browser, "#inbox", "30,000 KRW")
    wait_for_text(browser, "#inbox", f"user ({owner_id[:6]}…)")  # its label, short id beside
    assert not_reloaded(browser)
    timings("wallet: the owner's send → the grant in the inbox", (shown - sent) * 1000)
    click(browser, receive_button(browser))
    wait_for_text(browser, "#held", "30,000 KRW left")
    wait_for_text(browser, "#held", "uses left 2/2")
    wait_for_text(browser, "#inbox", "Nothing waiting")
    wait_for_text(browser, "#flash", "Received")
    assert not_reloaded(browser)

    browser.switch_to.window(owner_tab)
    wait_for_text(browser, "#send", "Delivered: target")
    wait_for_text(browser, "#feed", "was delivered to target")

    charge, pay = cli.tap(
        ("shop", "merchant", "charge", "--amount", "12,000"), ("target", "target", "pay")
    )
    assert charge.data["status"] == "approved", charge
    assert pay.status == 0, pay
    browser.switch_to.window(wallet_tab)
    click(browser, "refresh")
    wait_for_text(browser, "#held", "18,000 KRW left")
    owner.stop()
    wallet.stop()
