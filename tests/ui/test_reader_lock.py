"""One process owns a reader: a CLI tap started while another process holds the reader (or
the page's tap while a CLI holds it) says who holds it and gives up, never fights for it."""

from __future__ import annotations

import json
import os
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from nfcpay.errors import ReaderBusy
from nfcpay.transport.device import parse_device
from nfcpay.transport.lock import hold_reader
from tests.support.cli import Cli, finish, wait_for
from tests.support.ui import start_ui

USB = "usb:054c:06c1"


@pytest.fixture
def locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The lock directory of this test's runtime directory, which its processes inherit."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    return tmp_path / "nfcpay-readers"


def hold(device: str, holder: str, locks: Path) -> AbstractContextManager[None]:
    """Hold ``device`` as ``holder`` in the runtime directory of ``locks``."""
    return hold_reader(parse_device(device), holder, locks.parent)


def test_a_held_reader_names_its_holder(locks: Path) -> None:
    with (
        hold(USB, "nfcpay ui", locks),
        pytest.raises(
            ReaderBusy, match=rf"usb:054c:06c1 is held by `nfcpay ui` \(pid {os.getpid()}\)"
        ),
        hold(USB, "nfcpay merchant charge", locks),
    ):
        pass
    with hold(USB, "nfcpay merchant charge", locks):  # released with its holder
        pass


def test_simulated_readers_are_not_locked(locks: Path) -> None:
    loop = "loopback:50123"
    with hold(loop, "one side", locks), hold(loop, "the other side", locks):
        assert not locks.exists()


def test_a_cli_tap_gives_up_while_the_page_holds_the_reader(cli: Cli, locks: Path) -> None:
    cli.init("shop", "merchant")
    with hold(USB, "nfcpay ui", locks):
        done = finish(cli.start("shop", "merchant", "charge", "--amount", "1,000", device=USB))
    assert done.status != 0
    assert f"the reader {USB} is held by `nfcpay ui` (pid {os.getpid()})" in json.dumps(done.data)


def test_the_page_gives_up_while_a_cli_holds_the_reader(cli: Cli, locks: Path) -> None:
    cli.init("shop", "merchant")
    page = start_ui(cli, "shop", device=USB)
    with (
        httpx.Client(base_url=page.base) as client,
        hold(USB, "nfcpay merchant charge", locks),
    ):
        client.get(page.link)
        html = client.get("/").text
        csrf = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        client.post("/charge", data={"amount": "1000", "csrf": csrf}, headers={"origin": page.base})
        held = f"held by `nfcpay merchant charge` (pid {os.getpid()})"
        wait_for(lambda: held in client.get("/").text, what="the page to say who holds the reader")
    page.stop()
