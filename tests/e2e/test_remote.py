"""Grants sent through the server (issue 12), one ``nfcpay`` process per terminal against a
real server process: Alice sends Bob a grant while she is not at the counter; Bob fetches it
and pays. Only Bob can fetch it; a fetch whose answer is lost is repeated and yields the same
grant; once Bob has it the server no longer does; a revoked one never arrives."""

from __future__ import annotations

import json
import queue
import subprocess
import threading

import pytest

from nfcpay.errors import ApiError
from nfcpay.terminals.account import connect
from nfcpay.terminals.home import TerminalHome
from nfcpay.testing.server import ServerProcess
from tests.support.cli import PROCESS_TIMEOUT, Cli, LostAnswers, finish, interrupt, owner_with_card

pytestmark = pytest.mark.nfc_sim


def test_a_grant_sent_through_the_server_is_fetched_and_pays(
    cli: Cli, server: ServerProcess
) -> None:
    owner_with_card(cli)
    bob = cli.init("bob", "target")
    cli.init("mallory", "target")
    cli.init("shop", "merchant")

    sent = cli.run("user", "user", "send", "--to", bob, "--amount", "30,000", "--uses", "2")
    assert sent.status == 0, sent
    grant_id, delivery_id = sent.data["grant"]["grant_id"], sent.data["delivery"]["delivery_id"]
    assert sent.data["delivery"]["status"] == "pending"

    nothing = cli.run("mallory", "target", "receive", "--remote")
    assert (nothing.status, nothing.data["received"]) == (0, [])
    with connect(TerminalHome(cli.home("mallory")), None) as mallory:
        with pytest.raises(ApiError) as refused:
            mallory.get_delivery(delivery_id)
        assert (refused.value.status, refused.value.code) == (404, "delivery_not_found")

    proxy = LostAnswers(server.url)
    try:
        lost = cli.run("bob", "target", "receive", "--remote", server=proxy.url)
    finally:
        proxy.close()
    assert (lost.status, lost.data["error"]) == (5, "server_unavailable"), lost
    waiting = cli.run("bob", "target", "inbox")  # fetched, not kept: a crash before the ack
    assert [d["grant_id"] for d in waiting.data["deliveries"]] == [grant_id]
    assert "usage_auth" not in waiting.data["deliveries"][0]["grant"]

    got = cli.run("bob", "target", "receive", "--remote")
    assert got.status == 0, got
    [item] = got.data["received"]
    assert item["grant"]["grant_id"] == grant_id and "usage_auth" not in item["grant"]
    assert item["delivery"]["from"]["label"] == "user"
    assert cli.run("bob", "target", "receive", "--remote").data["received"] == []
    assert cli.run("bob", "target", "inbox").data["deliveries"] == []
    told = cli.run("user", "user", "notifications").data["notifications"]
    assert [n["grant_id"] for n in told if n["kind"] == "grant_delivered"] == [grant_id]

    charge, pay = cli.tap(
        ("shop", "merchant", "charge", "--amount", "12,000"), ("bob", "target", "pay")
    )
    assert (charge.status, pay.status) == (0, 0), (charge, pay)
    assert charge.data["status"] == "approved"


def test_a_revoked_grant_is_never_delivered(cli: Cli) -> None:
    owner_with_card(cli)
    bob = cli.init("bob", "target")
    issued = cli.run("user", "user", "issue", "--to", bob, "--amount", "5,000")
    grant_id = issued.data["grant"]["grant_id"]
    sent = cli.run("user", "user", "send", "--grant", grant_id)
    assert sent.status == 0 and sent.data["delivery"]["to"]["terminal_id"] == bob, sent
    assert cli.run("user", "user", "revoke", grant_id).status == 0

    got = cli.run("bob", "target", "receive", "--remote")
    assert (got.status, got.data["received"]) == (0, [])
    again = cli.run("user", "user", "send", "--grant", grant_id)
    assert (again.status, again.data["error"]) == (2, "grant_revoked"), again
    assert again.data["message"] == f"grant {grant_id} is revoked: there is nothing to send"


def test_follow_keeps_each_grant_as_it_is_sent(cli: Cli) -> None:
    owner_with_card(cli)
    bob = cli.init("bob", "target")
    follower = cli.start("bob", "target", "receive", "--remote", "--follow")
    sent = cli.run("user", "user", "send", "--to", bob, "--amount", "5,000")
    assert sent.status == 0, sent
    got = next_document(follower)
    assert got["grant"]["grant_id"] == sent.data["grant"]["grant_id"]
    interrupt(follower)
    assert finish(follower).status == 130
    assert cli.run("bob", "target", "inbox").data["deliveries"] == []


def next_document(process: subprocess.Popen[str]) -> dict[str, object]:
    """The next --json line ``process`` prints (failing, not hanging, if none comes)."""
    lines: queue.Queue[str] = queue.Queue()
    stdout = process.stdout
    assert stdout is not None
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    document: dict[str, object] = json.loads(lines.get(timeout=PROCESS_TIMEOUT))
    return document
