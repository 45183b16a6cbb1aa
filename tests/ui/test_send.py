"""The owner page's "send to terminal" refuses a target that cannot take the grant with a
plain sentence on the page, and nothing is issued or delivered (a real server and a real
``nfcpay ui`` process; no browser)."""

from __future__ import annotations

import pytest

from tests.support.cli import Cli, owner_with_card
from tests.support.ui import start_ui
from tests.ui.test_guard import csrf_of, signed_in

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
