"""Headless Chromium for the page tests: Debian's ``chromium`` driven through its own
``chromedriver`` by selenium (nothing is downloaded at run time; a machine without them
skips these tests, and says why)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: A phone-sized window: the pages must read on one.
WINDOW = (412, 915)
#: Generous: a loaded 2-core machine; the figures printed at the end tell the real times.
TEXT_BOUND_S = 30.0
#: Set to copy one screenshot of each page into docs/screenshots/ (for README).
UPDATE_DOCS_ENV = "NFCPAY_UPDATE_SCREENSHOTS"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def chromium() -> Iterator[Any]:
    """A headless Chromium session; skips the test where the browser cannot be had."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            pytest.skip(f"{path} is missing: install Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for_text(driver: Any, css: str, text: str, timeout: float = TEXT_BOUND_S) -> float:
    """Wait until the element ``css`` shows ``text``; returns the time.monotonic() it did."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(_: Any) -> bool:
        try:
            return text in driver.find_element(By.CSS_SELECTOR, css).text
        except Exception:  # replaced under us by a live swap: look again
            return False

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.02).until(shown)
    except TimeoutException:
        try:
            now = driver.find_element(By.CSS_SELECTOR, css).text
        except Exception:
            now = f"(no such element) at {driver.current_url}: {driver.page_source[:2000]}"
        raise AssertionError(f"{css!r} never showed {text!r}; it shows: {now}") from None
    return time.monotonic()


def screenshot(driver: Any, directory: Path, name: str) -> Path:
    """Keep a full-height screenshot of the page as ``<directory>/<name>.png``."""
    directory.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WINDOW[0], max(WINDOW[1], int(height) + 40))
    path = directory / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(*WINDOW)
    if os.environ.get(UPDATE_DOCS_ENV):
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS / path.name)
    return path


def click(driver: Any, element_id: str, timeout: float = TEXT_BOUND_S) -> None:
    """Click the element ``element_id``, found again if a live swap replaced it meanwhile."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while True:
        try:
            driver.find_element(By.ID, element_id).click()
            return
        except (StaleElementReferenceException, NoSuchElementException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
