"""Grants sent through the server, on the pages: "send to terminal" refuses a target that
cannot take the grant, and "receive" a delivery that is not this terminal's, each with a
plain sentence on the page and nothing issued, delivered or kept (a real server and real
``nfcpay ui`` processes; no browser)."""

from __future__ import annotations

import pytest

from tests.support.cli import Cli, owner_with_card
from tests.support.ui import csrf_of, signed_in, start_ui

pytestmark = pytest.mark.slow


def test_a_bad_target_is_a_plain_error_on_the_page_and_nothing_is_sent(cli: Cli) -> None:
    owner_with_card(cli)
    cli.init("target", "target")
    shop = cli.init("shop", "merchant")
    owner = start_ui(cli, "user")
    refusals = {
        "t_0000000000000000": "no terminal t_0000000000000000",
        "alice": "target terminal id must look like t_",
        shop: f"{shop} is a merchant terminal",
        "": "name the target terminal id",
    }
    with signed_in(owner) as client:
        csrf = csrf_of(client.get("/").text)
        for to, sentence in refusals.items():
            form = {"to": to, "amount": "10,000", "csrf": csrf}
            answer = client.post("/send", data=form, headers={"origin": owner.base})
            assert answer.status_code == 303
            page = client.get("/").text
            assert "flash error" in page and sentence in page, (to, page)
    owner.stop()
    assert cli.run("user", "user", "grants").data["grants"] == []
    assert cli.run("target", "target", "inbox").data["deliveries"] == []


def test_receiving_a_delivery_that_is_not_waiting_here_is_a_plain_error(cli: Cli) -> None:
    cli.init("target", "target")
    wallet = start_ui(cli, "target")
    refusals = {
        "/inbox/d_0000000000000000/receive": "no delivery d_0000000000000000 for this terminal",
        "/inbox/d_x%20y/receive": "&#39;d_x y&#39; is not an id this page shows",
    }
    with signed_in(wallet) as client:
        csrf = csrf_of(client.get("/").text)
        for path, sentence in refusals.items():
            answer = client.post(path, data={"csrf": csrf}, headers={"origin": wallet.base})
            assert answer.status_code == 303
            page = client.get("/").text
            assert "flash error" in page and sentence in page, (path, page)
    wallet.stop()
    assert cli.run("target", "target", "wallet").data["grants"] == []
