"""Two lost taps on one grant, settled exactly (hardening hole 6).

Real ``nfcpay`` processes over the loopback reader against a real server process, with the
link dropped on the target (``NFCPAY_FAULT_LINK_DROP``, see :mod:`nfcpay.transport.faults`):
the first tap loses the link before its means leave, so nothing is charged; the second loses
it after the merchant was paid, before the target read the result. Both receipts were made
from the same view of the grant, and the grant afterwards shows one charge, which fits
either. ``target wallet`` asks the server about each receipt's challenge: the second is
approved with the merchant's payment, the first stays ``unknown`` (no payment so far: the
merchant could still send those means), never the other way round.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nfcpay.testing.server import ServerProcess
from nfcpay.transport.faults import ENV
from tests.support.cli import Cli, Done, finish, free_udp_port, ready_pair

pytestmark = [pytest.mark.slow, pytest.mark.nfc_sim]

NFC = 4


@pytest.fixture
def dropping(tmp_path: Path, server: ServerProcess) -> Iterator[Cli]:
    """The same homes as ``cli``, run with a link drop (its ``env[ENV]`` set per tap)."""
    terminals = Cli(tmp_path, server.url)
    yield terminals
    terminals.close()


def tap_with_drop(cli: Cli, dropping: Cli, drop: str) -> tuple[Done, Done]:
    """The merchant charges 7,000 KRW; the target pays, its link dropping at ``drop``."""
    device = f"loopback:{free_udp_port()}"
    dropping.env[ENV] = drop
    charge = cli.start(
        "shop", "merchant", "charge", "--amount", "7,000", "--timeout", "15", device=device
    )
    pay = dropping.start("target", "target", "pay", "--timeout", "15", device=device)
    return finish(charge), finish(pay)


def test_two_lost_taps_on_one_grant_settle_each_as_the_server_charged_it(
    cli: Cli, dropping: Cli, server: ServerProcess
) -> None:
    grant_id = ready_pair(cli)
    # 1: the link drops just before the target sends its means: nothing reaches the server.
    charge, pay = tap_with_drop(cli, dropping, "send:2")
    assert (charge.status, pay.status) == (NFC, NFC), (charge, pay)
    # 2: the link drops just after the result arrived, before the target read it.
    charge, pay = tap_with_drop(cli, dropping, "recv:2")
    assert charge.status == 0 and charge.data["status"] == "approved", charge
    assert pay.status == NFC, pay
    payment_id = charge.data["payment_id"]

    for _ in range(2):  # a second refresh changes nothing
        wallet = cli.run("target", "target", "wallet")
        assert wallet.status == 0 and wallet.data["refreshed"], wallet
        first, second = sorted(wallet.data["receipts"], key=lambda r: r["created_at"])
        assert (first["status"], first["payment_id"]) == ("unknown", None), first
        assert (second["status"], second["payment_id"], second["approval_code"]) == (
            "approved",
            payment_id,
            charge.data["approval_code"],
        ), second
        [grant] = wallet.data["grants"]
        assert (grant["grant_id"], grant["remaining_amount"], grant["remaining_uses"]) == (
            grant_id,
            43_000,
            2,
        )
    shown = finish(cli.start("target", "target", "wallet", answers=""))
    assert shown.status == 0 and "not charged so far" in shown.stderr, shown
    payments = server.query(lambda tx: tx.all("SELECT payment_id FROM payments"))
    assert [row[0] for row in payments] == [payment_id]
    assert server.audit() == []
