"""Open-amount charges: the merchant names no amount, the target enters and signs one, and
exactly that is charged; an amount over the merchant's maximum is refused by each terminal
before the server hears of it. Whole taps between two readers over loopback (two threads,
one in-process server), as in :mod:`tests.terminals.test_flows`."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from nfcpay.client import PaymentClient
from nfcpay.errors import AmountRefused, Declined
from nfcpay.money import Money
from nfcpay.records import AckRecord, ChallengeRecord, ResultRecord
from nfcpay.terminals import exchange, merchant, target
from nfcpay.terminals.account import connect
from nfcpay.terminals.held import choose_shares
from nfcpay.terminals.open_amount import ENTRY_TAPS, AmountNeeded, price
from nfcpay.terminals.receipts import Receipts
from nfcpay.terminals.user import Rights
from nfcpay.transport.reader import open_reader
from tests.support.cli import free_udp_port
from tests.support.scenes import Scene, SharedTransport, challenge_for

pytestmark = pytest.mark.nfc_sim


class Recorder(SharedTransport):
    """The server's transport, noting every request the merchant sends."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        super().__init__(inner)
        self.seen: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url.path}")
        return super().handle_request(request)


def outcomes(first: Callable[[], Any], second: Callable[[], Any]) -> tuple[Any, Any]:
    """What each side returned, or the nfcpay error it raised."""
    with ThreadPoolExecutor(2) as pool:
        futures = pool.submit(first), pool.submit(second)
        return tuple(f.exception(timeout=30) or f.result() for f in futures)  # type: ignore[return-value]


def shop(
    scene: Scene, device: str, recorder: Recorder, max_amount: int | None = None
) -> Callable[[], merchant.Charge]:
    """The merchant's open charge (at most ``max_amount``), its server calls recorded."""

    def charge() -> merchant.Charge:
        most = None if max_amount is None else Money(max_amount, "KRW")
        with (
            connect(scene.merchant, None, transport=recorder) as client,
            open_reader(device) as reader,
        ):
            return merchant.charge(
                scene.merchant, client, reader, None, max_amount=most, timeout=10
            )

    return charge


def payments(scene: Scene) -> list[dict[str, Any]]:
    client: PaymentClient
    with scene.client(scene.merchant) as client:
        return client.list_payments()


def test_an_open_charge_is_approved_for_exactly_the_amount_the_target_entered(
    scene: Scene,
) -> None:
    """The first tap shows the person the charge and ends; they type; the second tap pays,
    while the merchant's one charge waits through both."""
    scene.give(Rights(amount_cap=30_000))
    device = f"loopback:{free_udp_port()}"
    shown: list[ChallengeRecord] = []

    def target_pays() -> target.Paid:
        with open_reader(device) as reader:
            with pytest.raises(AmountNeeded) as needed:
                target.pay(scene.target, reader, timeout=10)
            shown.append(needed.value.challenge)
            typed = 12_000  # what the person types, with no tap waiting on them
            return target.pay(
                scene.target, reader, amount=typed, merchant=shown[0].merchant_id, timeout=10
            )

    recorder = Recorder(scene.server.transport)
    charged, paid = outcomes(shop(scene, device, recorder, max_amount=20_000), target_pays)
    assert isinstance(charged, merchant.Charge), charged
    assert (charged.status, charged.amount, charged.open_amount) == ("approved", 12_000, True)
    assert (paid.status, paid.receipt.amount) == ("approved", 12_000)
    [challenge] = shown
    assert (challenge.is_open, challenge.max_amount, challenge.purpose) == (True, 20_000, "5812")
    assert [r.amount for r in Receipts(scene.target).each()] == [12_000]  # signed once
    [payment] = payments(scene)
    assert (payment["payment_id"], payment["amount"]) == (charged.payment_id, 12_000)
    assert scene.server.audit() == []


def test_the_target_refuses_an_amount_over_the_maximum_before_signing(scene: Scene) -> None:
    scene.give(Rights(amount_cap=30_000))
    device = f"loopback:{free_udp_port()}"

    def target_pays() -> target.Paid:
        with open_reader(device) as reader:
            return target.pay(scene.target, reader, amount=25_000, timeout=10)

    recorder = Recorder(scene.server.transport)
    charged, paid = outcomes(shop(scene, device, recorder, max_amount=20_000), target_pays)
    assert isinstance(paid, AmountRefused) and paid.code == "over_max"
    assert "25,000 KRW is more than merchant" in paid.message
    assert "(at most 20,000 KRW)" in paid.message
    assert isinstance(charged, Declined) and charged.code == "over_max"
    assert list(Receipts(scene.target).each()) == []  # nothing was signed or sent
    assert not any(seen.endswith("/v1/payments") for seen in recorder.seen), recorder.seen
    assert payments(scene) == []


def test_the_merchant_refuses_signed_means_over_its_maximum_without_asking_the_server(
    scene: Scene,
) -> None:
    """A target that ignores the maximum (a modified one) signs 25,000: the merchant says no
    itself, and the server is never asked."""
    scene.give(Rights(amount_cap=30_000))
    device = f"loopback:{free_udp_port()}"

    def greedy_target() -> ResultRecord | AckRecord:
        identity = scene.target.identity()
        with (
            open_reader(device) as reader,
            exchange.tap(
                reader,
                exchange.PAY_SERVICE,
                offer=False,
                timeout=10,
                status=exchange.quiet,
                what="pay",
            ) as channel,
        ):
            exchange.send(channel, exchange.hello_from(scene.target, identity))
            priced = exchange.receive(channel, ChallengeRecord).priced(25_000)
            shares = choose_shares(scene.target, priced)
            exchange.send(channel, target.sign_means(scene.target, identity, priced, shares))
            return exchange.receive_or_refusal(channel, ResultRecord)

    recorder = Recorder(scene.server.transport)
    charged, told = outcomes(shop(scene, device, recorder, max_amount=20_000), greedy_target)
    assert isinstance(charged, AmountRefused) and charged.code == "over_max"
    assert isinstance(told, AckRecord) and (told.accepted, told.code) == (False, "over_max")
    assert not any(seen.endswith("/v1/payments") for seen in recorder.seen), recorder.seen
    assert payments(scene) == []


def test_an_amount_given_for_a_fixed_charge_must_be_the_one_asked(scene: Scene) -> None:
    fixed = challenge_for(scene, 12_000)
    assert price(fixed, 12_000) is fixed
    assert price(fixed, None) is fixed
    with pytest.raises(AmountRefused) as caught:
        price(fixed, 15_000)
    assert caught.value.code == "amount_fixed"
    assert caught.value.message.startswith(
        f"merchant {fixed.merchant_id} asks for 12,000 KRW, not the 15,000 KRW you entered"
    )


def test_an_open_charge_needs_an_amount_and_pays_no_group_bill(scene: Scene) -> None:
    donation = challenge_for(scene, 1)
    donation = ChallengeRecord(
        merchant_id=donation.merchant_id,
        currency="KRW",
        nonce=donation.nonce,
        purpose="5812",
        max_amount=5_000,
    )
    assert price(donation, 5_000).amount == 5_000
    with pytest.raises(AmountNeeded, match="tap again with it") as needed:
        price(donation, None)
    assert (needed.value.code, needed.value.challenge) == ("amount_needed", donation)
    with pytest.raises(AmountRefused, match=r"at most 5,000 KRW"):
        price(donation, 5_001)
    with pytest.raises(Declined, match="a group bill is paid for the total") as bill:
        price(donation, 1_000, bill_id="b_dinner")
    assert bill.value.code == "bill_needs_amount"


def test_an_amount_typed_for_one_merchant_is_refused_at_another(scene: Scene) -> None:
    donation = challenge_for(scene, 1)
    donation = ChallengeRecord(
        merchant_id=donation.merchant_id, currency="KRW", nonce=donation.nonce, purpose="5812"
    )
    assert price(donation, 3_000, merchant=donation.merchant_id).amount == 3_000
    with pytest.raises(AmountRefused) as caught:
        price(donation, 3_000, merchant="m_elsewhere")
    assert caught.value.code == "other_merchant"
    assert caught.value.message.startswith("you entered the amount for merchant m_elsewhere")


def test_the_merchant_stops_waiting_after_taps_that_never_bring_an_amount(scene: Scene) -> None:
    scene.give(Rights(amount_cap=30_000))
    device = f"loopback:{free_udp_port()}"

    def target_never_types() -> list[str]:
        codes = []
        with open_reader(device) as reader:
            for _ in range(ENTRY_TAPS):
                with pytest.raises(AmountNeeded) as needed:
                    target.pay(scene.target, reader, timeout=10)
                codes.append(needed.value.code)
        return codes

    recorder = Recorder(scene.server.transport)
    charged, codes = outcomes(shop(scene, device, recorder), target_never_types)
    assert codes == ["amount_needed"] * ENTRY_TAPS
    assert isinstance(charged, Declined) and charged.code == "amount_needed"
    assert list(Receipts(scene.target).each()) == []
    assert not any(seen.endswith("/v1/payments") for seen in recorder.seen), recorder.seen
