"""Ctrl-C in every waiting state: exit 130 at once, nothing new stored, crash safety kept.

Each test brings one ``nfcpay`` process into a waiting state, sends SIGINT, and checks the
exit status and what the terminal's home holds afterwards. A charge that may have happened
is never forgotten: a merchant's pending receipt, a target's ``sent`` receipt and an
unanswered refund stay, exactly as after a crash. The bound on the exit is generous (a hang
fails, a slow machine does not); the measured signal-to-exit times are printed at the end
of the run (see ``conftest.pytest_terminal_summary``), not asserted.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from nfcpay.errors import TransportError
from nfcpay.terminals import exchange
from nfcpay.testing.server import ServerProcess
from nfcpay.transport import open_reader
from nfcpay.transport.virtual.broker import BrokerError, connect
from tests.support.cli import (
    Cli,
    Done,
    SlowProxy,
    free_udp_port,
    owner_with_card,
    ready_pair,
    wait_for,
)

pytestmark = pytest.mark.nfc_sim

#: The ``interrupt_and_time`` fixture: Ctrl-C a process, return how it ended.
Interrupter = Callable[[subprocess.Popen[str], str], Done]

#: The answers of a server behind this proxy come later than any test waits.
NEVER = 600.0


@contextmanager
def field_port() -> Iterator[tuple[socket.socket, int]]:
    """A loopback port held by the test, so that a polling terminal's frames arrive here."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as field:
        field.bind(("127.0.0.1", 0))
        field.settimeout(20)
        yield field, int(field.getsockname()[1])


def await_a_poll(field: socket.socket) -> None:
    """Return once a polling terminal has sent its first frame to ``field``."""
    frame, _ = field.recvfrom(1024)
    assert frame, "an empty datagram is not a poll"


def listening(port: int) -> bool:
    """Whether a waiting terminal holds the loopback port (its reader listens)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def stored(cli: Cli, name: str, kind: str) -> list[dict]:
    folder = cli.home(name) / kind
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def start_listening(cli: Cli, name: str, *args: str) -> tuple[subprocess.Popen[str], int]:
    port = free_udp_port()
    process = cli.start(name, *args, "--timeout", "60", device=f"loopback:{port}")
    wait_for(lambda: listening(port), what=f"{name}'s reader to listen")
    return process, port


# -- waiting for a tap ------------------------------------------------------------------------


def test_merchant_waiting_for_a_tap(cli: Cli, interrupt_and_time: Interrupter) -> None:
    cli.init("shop", "merchant")
    process, _ = start_listening(cli, "shop", "merchant", "charge", "--amount", "1000")
    done = interrupt_and_time(process, "merchant charge: waiting for a tap")
    assert done.status == 130 and "Interrupted" in done.stderr, done
    assert stored(cli, "shop", "receipts") == []


@pytest.mark.parametrize("chip", ["rcs380", "acr122u"])
def test_waiting_on_a_virtual_reader(cli: Cli, interrupt_and_time: Interrupter, chip: str) -> None:
    """The wait inside nfcpy's real driver (a listening RC-S380, a polling ACR122U)."""
    cli.init("shop", "merchant")
    cli.use_virtual_readers(chip, chip)
    device, _ = cli.readers.devices()
    process = cli.start("shop", "merchant", "charge", "--amount", "1000", "--timeout", "60",
                        device=device)  # fmt: skip
    fields = cli.env["XDG_RUNTIME_DIR"]
    wait_for(lambda: in_the_field(fields, cli.readers.field), what="the reader in the field")
    done = interrupt_and_time(process, f"merchant charge: waiting on a virtual {chip}")
    assert done.status == 130, done
    assert stored(cli, "shop", "receipts") == []


def in_the_field(runtime_dir: str, field: str) -> bool:
    """Whether a virtual reader has joined ``field`` (its broker lists an antenna)."""
    try:
        with connect(field, directory=Path(runtime_dir) / "nfcpay-fields", start=False) as f:
            return bool(f.status()["antennas"])
    except BrokerError:
        return False


def test_target_polling_for_a_merchant(cli: Cli, interrupt_and_time: Interrupter) -> None:
    cli.init("target", "target")
    with field_port() as (field, port):
        process = cli.start("target", "target", "pay", "--timeout", "60", device=f"loopback:{port}")
        await_a_poll(field)
        done = interrupt_and_time(process, "target pay: polling for a merchant")
    assert done.status == 130, done
    assert stored(cli, "target", "receipts") == []


def test_user_waiting_to_give(cli: Cli, interrupt_and_time: Interrupter) -> None:
    owner_with_card(cli)
    process, _ = start_listening(cli, "user", "user", "give", "--amount", "5000")
    done = interrupt_and_time(process, "user give: waiting for a tap")
    assert done.status == 130, done
    grants = cli.run("user", "user", "grants")
    assert grants.data["grants"] == []  # no grant was issued for a tap that never came


# -- mid-exchange -----------------------------------------------------------------------------


def test_merchant_mid_exchange_with_a_silent_peer(
    cli: Cli, interrupt_and_time: Interrupter
) -> None:
    """Linked up, waiting for the target's hello, which never comes."""
    cli.init("shop", "merchant")
    process, port = start_listening(cli, "shop", "merchant", "charge", "--amount", "1000")
    linked, release = threading.Event(), threading.Event()

    def silent_peer() -> None:
        try:
            with (
                open_reader(f"loopback:{port}") as reader,
                reader.tap(exchange.PAY_SERVICE, offer=False, carrier="llcp", timeout=20),
            ):
                linked.set()
                release.wait(30)
        except TransportError:
            pass  # the merchant was interrupted mid-exchange: the link is gone, as expected

    peer = threading.Thread(target=silent_peer)
    peer.start()
    try:
        assert linked.wait(20), "the silent peer never linked up"
        done = interrupt_and_time(process, "merchant charge: mid-exchange")
    finally:
        release.set()
        peer.join(30)
    assert done.status == 130, done
    assert stored(cli, "shop", "receipts") == []


# -- waiting for the server -------------------------------------------------------------------


@pytest.mark.slow
def test_merchant_and_target_waiting_for_the_decision(
    cli: Cli, server: ServerProcess, interrupt_and_time: Interrupter
) -> None:
    """The merchant holds the means and waits for the server; the target waits for the result.

    Both keep what a crash would keep: the merchant's pending receipt (``merchant settle``
    sends it again) and the target's ``sent`` receipt (``target wallet`` asks about it).
    """
    ready_pair(cli)
    proxy = SlowProxy(server.url, delay=NEVER)
    try:
        port = free_udp_port()
        shop = cli.start(
            "shop", "merchant", "charge", "--amount", "7,000", "--timeout", "60",
            device=f"loopback:{port}", server=proxy.url,
        )  # fmt: skip
        wait_for(lambda: listening(port), what="the merchant's reader to listen")
        target = cli.start("target", "target", "pay", "--timeout", "60", device=f"loopback:{port}")
        wait_for(lambda: stored(cli, "shop", "receipts"), what="the merchant to hold the means")
        wait_for(lambda: stored(cli, "target", "receipts"), what="the target's sent receipt")
        paid = interrupt_and_time(target, "target pay: waiting for the result")
        charged = interrupt_and_time(shop, "merchant charge: waiting for the server")
    finally:
        proxy.close()
    assert (paid.status, charged.status) == (130, 130), (paid, charged)
    [receipt] = stored(cli, "shop", "receipts")
    assert receipt["status"] == "pending" and receipt["request"]["means"]["signature"]
    [sent] = stored(cli, "target", "receipts")
    assert sent["status"] == "sent"


def interrupted_while_the_server_answers(
    cli: Cli, server: ServerProcess, interrupt: Interrupter, state: str, *command: str
) -> Done:
    """Run ``command`` (home name first) against a server that never answers; Ctrl-C it
    once its request is out."""
    proxy = SlowProxy(server.url, delay=NEVER)
    try:
        process = cli.start(*command, server=proxy.url)
        wait_for(lambda: proxy.connections > 0, what=f"{state} to ask the server")
        return interrupt(process, state)
    finally:
        proxy.close()


def test_notifications_follow(
    cli: Cli, server: ServerProcess, interrupt_and_time: Interrupter
) -> None:
    owner_with_card(cli)
    done = interrupted_while_the_server_answers(
        cli, server, interrupt_and_time, "user notifications --follow",
        "user", "user", "notifications", "--follow",
    )  # fmt: skip
    assert done.status == 130, done


@pytest.mark.slow
def test_merchant_settle_waiting_for_the_server(
    cli: Cli, server: ServerProcess, interrupt_and_time: Interrupter
) -> None:
    receipt = pending_charge(cli)
    done = interrupted_while_the_server_answers(
        cli, server, interrupt_and_time, "merchant settle: waiting for the server",
        "shop", "merchant", "settle",
    )  # fmt: skip
    assert done.status == 130, done
    assert stored(cli, "shop", "receipts") == [receipt]  # still pending, unchanged


def pending_charge(cli: Cli) -> dict:
    """The pending receipt a charge leaves when its server cannot be reached."""
    ready_pair(cli)
    charge, _ = cli.tap(
        ("shop", "merchant", "charge", "--amount", "7,000"),
        ("target", "target", "pay"),
        waiting_server="http://127.0.0.1:9",
    )
    assert charge.status == 5, charge
    [receipt] = stored(cli, "shop", "receipts")
    assert receipt["status"] == "pending"
    return receipt


@pytest.mark.slow
def test_merchant_refund_waiting_for_the_server(
    cli: Cli, server: ServerProcess, interrupt_and_time: Interrupter
) -> None:
    payment_id = paid_once(cli)
    done = interrupted_while_the_server_answers(
        cli, server, interrupt_and_time, "merchant refund: waiting for the server",
        "shop", "merchant", "refund", payment_id, "--amount", "1,000",
    )  # fmt: skip
    assert done.status == 130, done
    [unanswered] = stored(cli, "shop", "refunds")  # kept: the next run sends the same key
    assert unanswered["payment_id"] == payment_id and unanswered["amount"] == 1_000


def paid_once(cli: Cli) -> str:
    ready_pair(cli)
    charge, _ = cli.tap(
        ("shop", "merchant", "charge", "--amount", "3,000"), ("target", "target", "pay")
    )
    assert charge.status == 0, charge
    return str(charge.data["payment_id"])


# -- group commands ---------------------------------------------------------------------------


def test_group_collect_waiting_for_members(cli: Cli, interrupt_and_time: Interrupter) -> None:
    cli.init("col", "target")
    process, _ = start_listening(
        cli, "col", "group", "collect", "--total", "30,000", "--members", "3"
    )
    done = interrupt_and_time(process, "group collect: waiting for members")
    assert done.status == 130, done
    bills = stored(cli, "col", "bills")
    assert all(not bill.get("members") for bill in bills), bills  # nobody joined


def test_group_join_polling_for_the_collector(cli: Cli, interrupt_and_time: Interrupter) -> None:
    owner_with_card(cli)
    with field_port() as (field, port):
        process = cli.start(
            "user", "group", "join", "--yes", "--timeout", "60", device=f"loopback:{port}"
        )
        await_a_poll(field)
        done = interrupt_and_time(process, "group join: polling for the collector")
    assert done.status == 130, done
    assert cli.run("user", "user", "grants").data["grants"] == []
