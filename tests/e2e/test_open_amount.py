"""``merchant charge --open`` with ``target pay --amount`` or a prompt, one ``nfcpay`` process
per terminal over the loopback reader (and, for the charge itself, virtual chips behind
nfcpy's RC-S380 and ACR122U drivers): the amount the target enters is signed and charged
exactly, and one over the merchant's ``--max`` is refused before the server is asked."""

from __future__ import annotations

import pytest

from nfcpay.testing.server import ServerProcess
from tests.support.cli import Cli, finish, ready_pair

pytestmark = pytest.mark.nfc_sim


@pytest.fixture
def counter(cli: Cli, request: pytest.FixtureRequest) -> Cli:
    """An owner who gave the target a 30,000 KRW grant for 3 uses, and a shop; over the
    loopback reader unless the test names virtual chips (``"waiting+tapping"``)."""
    readers = getattr(request, "param", "loopback")
    if readers != "loopback":
        cli.use_virtual_readers(*readers.split("+"))
    ready_pair(cli, amount="30,000")
    return cli


@pytest.mark.parametrize("counter", ["loopback", "rcs380+acr122u"], indirect=True)
def test_the_target_enters_the_amount_and_exactly_that_is_charged(
    counter: Cli, server: ServerProcess
) -> None:
    charge, pay = counter.tap(
        ("shop", "merchant", "charge", "--open", "--max", "20,000"),
        ("target", "target", "pay", "--amount", "12,000"),
    )
    assert (charge.status, pay.status) == (0, 0), (charge, pay)
    assert (charge.data["amount"], charge.data["open_amount"]) == (12_000, True)
    assert pay.data["amount"] == 12_000 and pay.data["payment_id"] == charge.data["payment_id"]

    # Without --amount the first tap shows the person the merchant and purpose and ends; they
    # are asked (again until what they type reads as an amount) and tap again with it.
    waiting, tapping = counter.readers.devices()
    shop = counter.start("shop", "merchant", "charge", "--open", "--timeout", "20", device=waiting)
    person = counter.start(
        "target", "target", "pay", "--timeout", "20", device=tapping, answers="a lot\n9,500\n"
    )
    charged, paid = finish(shop), finish(person)
    assert (charged.status, paid.status) == (0, 0), (charged, paid)
    assert charged.data["amount"] == 9_500
    # The target paid there a moment ago: the shop is named, with its short id beside.
    assert "Amount to pay merchant shop (m_" in paid.stderr and "(KRW)" in paid.stderr
    assert "Tap the merchant's reader again to pay 9,500 KRW" in paid.stderr
    assert "APPROVED 9,500 KRW" in paid.stderr

    payments = counter.run("shop", "merchant", "payments")
    assert sorted(p["amount"] for p in payments.data["payments"]) == [9_500, 12_000]
    assert server.audit() == []


def test_an_amount_over_the_maximum_is_refused_before_the_server_is_asked(counter: Cli) -> None:
    charge, pay = counter.tap(
        ("shop", "merchant", "charge", "--open", "--max", "20,000"),
        ("target", "target", "pay", "--amount", "25,000"),
    )
    assert (pay.status, pay.data["error"]) == (2, "over_max"), pay
    assert pay.data["message"].endswith("accepts for this charge (at most 20,000 KRW)")
    assert (charge.status, charge.data["error"]) == (3, "over_max"), charge
    payments = counter.run("shop", "merchant", "payments")
    assert payments.data["payments"] == payments.data["pending"] == []


def test_a_charge_asks_for_an_amount_or_open(counter: Cli) -> None:
    for args, fragment in [
        ((), "give the amount to charge with --amount, or --open"),
        (("--amount", "1,000", "--open"), "give the amount to charge with --amount, or --open"),
        (("--amount", "1,000", "--max", "2,000"), "use it with --open"),
    ]:
        done = counter.run("shop", "merchant", "charge", *args)
        assert done.status == 2 and fragment in done.data["message"], done
