"""The counter flows on real readers: ``NFCPAY_TEST_DEVICES=<waiting>,<tapping>``.

The first device waits (it must listen: e.g. ``usb:054c:06c1`` for an RC-S380), the second
taps (any reader, e.g. ``usb:072f:2200`` for an ACR122U). Bring them together when asked.
"""

from __future__ import annotations

import os

import pytest

from tests.support.cli import Cli, finish

pytestmark = pytest.mark.hardware

DEVICES = os.environ.get("NFCPAY_TEST_DEVICES", "")


@pytest.mark.skipif(DEVICES.count(",") != 1, reason="NFCPAY_TEST_DEVICES names no reader pair")
def test_give_and_pay_on_real_readers(cli: Cli) -> None:
    waiting, tapping = DEVICES.split(",")
    for name, role in (("user", "user"), ("target", "target"), ("shop", "merchant")):
        cli.init(name, role)
    cli.run("user", "user", "add-card", "--number", "4111111111111111", "--expiry", "12/39",
            "--limit", "100000")  # fmt: skip
    give = cli.start("user", "user", "give", "--amount", "10000", "--yes", device=waiting)
    receive = finish(cli.start("target", "target", "receive", device=tapping))
    assert (finish(give).status, receive.status) == (0, 0)
    charge = cli.start("shop", "merchant", "charge", "--amount", "5000", device=waiting)
    pay = finish(cli.start("target", "target", "pay", device=tapping))
    assert (finish(charge).status, pay.status) == (0, 0)
