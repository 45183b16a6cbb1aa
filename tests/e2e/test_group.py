"""Group payment end to end (issue 5, acceptance 1): collector, three members, merchant and
server as separate processes over the loopback reader, in exact and remainder mode."""

from __future__ import annotations

import pytest

from nfcpay.terminals.account import connect
from nfcpay.terminals.home import TerminalHome
from nfcpay.testing.server import ServerProcess
from tests.support.cli import Cli, finish, free_udp_port

MEMBERS = ("ann", "bo", "cy")
CARDS = ("4111111111111111", "5555555555554444", "4012888888881881")


def _people(cli: Cli) -> dict[str, str]:
    """Register the collector (with a wallet), three members (with cards) and the shop."""
    ids = {"col": cli.init("col", "target"), "shop": cli.init("shop", "merchant")}
    assert cli.run("col", "user", "add-wallet", "--balance", "500,000").status == 0
    for i, name in enumerate(MEMBERS):
        ids[name] = cli.init(name, "user")
        card = ("--number", CARDS[i], "--expiry", "12/39", "--limit", "300,000")
        done = cli.run(name, "user", "add-card", *card)
        assert done.status == 0, done
    return ids


def _sources(cli: Cli, name: str) -> dict[str, int]:
    sources = cli.run(name, "user", "sources").data["sources"]
    return {
        s["source_id"]: s["outstanding"] if s["kind"] == "card" else 500_000 - s["balance"]
        for s in sources
    }


def _collect(cli: Cli, *collect_args: str, joiners: tuple[str, ...] = MEMBERS) -> dict:
    waiting, tapping = cli.readers.devices()
    collector = cli.start(
        "col", "group", "collect", *collect_args, "--timeout", "40", device=waiting
    )
    for name in joiners:
        join = finish(cli.start(name, "group", "join", "--yes", "--timeout", "20", device=tapping))
        assert join.status == 0, join
    done = finish(collector)
    assert done.status == 0, done
    return done.data["bill"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "readers"),
    [("exact", "loopback"), ("remainder", "loopback"), ("exact", "rcs380+acr122u")],
)
def test_group_bill(cli: Cli, server: ServerProcess, mode: str, readers: str) -> None:
    """The collector's reader waits, each member's taps (the second of ``readers``)."""
    if readers != "loopback":
        cli.use_virtual_readers(*readers.split("+"))
    ids = _people(cli)
    bill = _collect(cli, "--total", "100,000", "--shares", "30000,25000,20000", "--mode", mode)
    bill_id = bill["bill_id"]
    assert bill["status"] == "ready" and bill["collector_share"] == 25_000
    assert sorted(s["member"] for s in bill["slots"]) == sorted(ids[n] for n in MEMBERS)

    status = cli.run("col", "group", "status", bill_id)
    assert status.status == 0 and status.data["bill"]["status"] == "ready"

    charged = "100,000" if mode == "exact" else "104,000"  # remainder: a tip on top
    charge, pay = cli.tap(
        ("shop", "merchant", "charge", "--amount", charged),
        ("col", "target", "pay", "--bill", bill_id),
    )
    assert (charge.status, pay.status) == (0, 0), (charge, pay)
    assert charge.data["status"] == pay.data["status"] == "approved"
    assert pay.data["bill_id"] == bill_id

    shares = dict(zip(MEMBERS, (30_000, 25_000, 20_000), strict=True))
    for name, share in shares.items():
        assert list(_sources(cli, name).values()) == [share]
        notes = cli.run(name, "user", "notifications").data["notifications"]
        used = [n for n in notes if n["kind"] == "grant_used"]
        assert [(n["amount"], n["bill_id"]) for n in used] == [(share, bill_id)]
        assert used[0]["merchant_id"] == charge.data.get("merchant_id", used[0]["merchant_id"])
    own = 25_000 if mode == "exact" else 29_000
    assert list(_sources(cli, "col").values()) == [own]
    assert cli.run("col", "group", "status", bill_id).data["bill"]["status"] == "paid"
    assert server.audit() == []

    # The bill cannot be paid twice.
    again, refused = cli.tap(
        ("shop", "merchant", "charge", "--amount", charged),
        ("col", "target", "pay", "--bill", bill_id),
    )
    assert refused.status != 0 and again.status != 0


@pytest.mark.slow
def test_member_over_max_refuses_and_slot_stays_open(cli: Cli) -> None:
    _people(cli)
    device = f"loopback:{free_udp_port()}"
    collector = cli.start(
        "col", "group", "collect", "--total", "90,000", "--members", "2", "--timeout", "40",
        device=device,
    )  # fmt: skip
    refused = finish(
        cli.start("ann", "group", "join", "--yes", "--max", "20,000", "--timeout", "20",
                  device=device)
    )  # fmt: skip
    assert refused.status == 3 and refused.data["error"] == "over_maximum", refused
    for name in ("bo", "cy"):
        join = finish(cli.start(name, "group", "join", "--yes", "--timeout", "20", device=device))
        assert join.status == 0 and join.data["amount"] == 30_000, join
    done = finish(collector)
    assert done.status == 0, done
    assert [e["ok"] for e in done.data["events"]] == [False, True, True]
    assert "over this member's maximum" in done.data["events"][0]["message"]


@pytest.mark.slow
def test_a_member_is_asked_with_the_link_down_then_taps_again(cli: Cli) -> None:
    """No --yes: the first tap only reads the request; the person answers; a second tap pays."""
    _people(cli)
    waiting, tapping = cli.readers.devices()
    collector = cli.start(
        "col", "group", "collect", "--total", "60,000", "--members", "2", "--timeout", "40",
        device=waiting,
    )  # fmt: skip
    declined = finish(cli.start("ann", "group", "join", "--timeout", "20", device=tapping,
                                answers="n\n"))  # fmt: skip
    assert declined.status == 3 and "you declined to pay 20,000 KRW" in declined.stderr
    for name in ("bo", "cy"):
        joined = finish(cli.start(name, "group", "join", "--timeout", "20", device=tapping,
                                  answers="y\n"))  # fmt: skip
        assert joined.status == 0, joined
        assert "Pay 20,000 KRW of bill" in joined.stderr and "Joined bill" in joined.stderr
    done = finish(collector)
    assert done.status == 0, done
    codes = [e.get("code") or "joined" for e in done.data["events"]]
    # ann read the request and left to decide; bo and cy each read, left, came back and paid
    assert codes == ["member_deciding", "member_deciding", "joined", "member_deciding", "joined"]


@pytest.mark.slow
def test_demo_group_story() -> None:
    """`nfcpay demo --group 3`: over-limit member declines the bill, replacement approves it."""
    import json
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "nfcpay", "--json", "demo", "--group", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    data = json.loads(run.stdout.strip().splitlines()[-1])
    assert run.returncode == 0 and data["ok"], data
    names = [step["name"] for step in data["steps"]]
    assert names[-3:] == ["group_declined", "group_replace", "group_approved"]


def test_a_new_bill_is_opened_with_the_server_and_needs_it(cli: Cli) -> None:
    """The server picks the bill's id and knows its collector; without the server, no bill
    is started at all."""
    col = cli.init("col", "target")
    collect = ("group", "collect", "--total", "90,000", "--members", "2", "--timeout", "1")
    device = f"loopback:{free_udp_port()}"
    down = finish(cli.start("col", *collect, device=device, server="http://127.0.0.1:9"))
    assert down.status == 5 and down.data["error"] == "connect_failed", down
    assert down.data["message"].startswith(
        "a bill is opened with the payment server, and it is out of reach: "
    ), down
    assert list(TerminalHome(cli.home("col")).items("bills")) == []
    opened = finish(cli.start("col", *collect, device=device))
    assert opened.status == 3, opened  # nobody tapped within the second
    bill_id = opened.data["bill"]["bill_id"]
    with connect(TerminalHome(cli.home("col"))) as client:
        on_server = client.get_bill(bill_id)
    assert (on_server["collector_terminal"], on_server["total"]) == (col, 90_000)
    assert (on_server["status"], on_server["members"]) == ("open", [])
