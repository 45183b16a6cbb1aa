"""The counter page (merchant terminal): type an amount; the customer-facing screen shows it
large with "tap now", then APPROVED or DECLINED with the reason, and the amount box is ready
for the next customer; recent payments with refunds below."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from nfcpay.errors import ApiError, NfcPayError
from nfcpay.money import Money, format_minor, parse_amount
from nfcpay.terminals import merchant, refunds
from nfcpay.transport.reader import Reader
from nfcpay.ui.app import Json, Page, client_of, object_id

#: Seconds the counter waits for the customer's tap.
CHARGE_TIMEOUT_S = 120.0
#: Payments listed under the counter, newest first.
RECENT = 10


@dataclass(frozen=True)
class Screen:
    """What the customer sees: ``phase`` ready, waiting, approved, declined, pending or error."""

    phase: str = "ready"
    amount: int | None = None
    text: str = ""


class CounterPage(Page):
    template = "counter.html"
    panel_names = ("screen", "payments")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.screen = Screen()

    def context(self) -> Json:
        try:
            with client_of(self.ui) as client:
                found = client.list_payments()
        except ApiError:
            return {"screen": self.screen, "payments": [], "offline": True}
        recent = sorted(found, key=lambda p: str(p["created_at"]), reverse=True)
        return {"screen": self.screen, "payments": recent[:RECENT], "offline": False}

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/charge", self.action(self.charge), methods=["POST"]),
            Route("/payments/{payment_id}/refund", self.action(self.refund), methods=["POST"]),
        ]

    def charge(self, form: Json, _: Request) -> None:
        money = parse_amount(form.get("amount", ""), self.ui.identity.currency)
        if money.minor <= 0:
            raise NfcPayError("type an amount above zero to charge")
        waiting = Screen("waiting", money.minor, self.ui.labels["tap_now"])
        if not self.ui.taps.start(self._tap(money.minor), self._done, self._failed):
            raise NfcPayError(self.ui.labels["busy"])
        self.screen = waiting
        self.say(None)
        self.refresh("screen")

    def _tap(self, minor: int) -> Callable[[Reader], merchant.Charge]:
        currency = self.ui.identity.currency

        def tap(reader: Reader) -> merchant.Charge:
            with client_of(self.ui) as client:
                return merchant.charge(
                    self.ui.home,
                    client,
                    reader,
                    Money(minor, currency),
                    timeout=CHARGE_TIMEOUT_S,
                    status=self._status,
                )

        return tap

    def _status(self, text: str) -> None:
        self.screen = replace(self.screen, text=text)
        self.refresh("screen")

    def _done(self, receipt: merchant.Charge) -> None:
        reason = (
            f"{receipt.decline_code}: {receipt.message}"
            if receipt.status != "approved"
            else f"{receipt.payment_id} · {receipt.approval_code}"
        )
        self.screen = Screen(receipt.status, receipt.amount, reason)
        self.refresh("screen", "payments")

    def _failed(self, exc: NfcPayError) -> None:
        self.screen = Screen("error", self.screen.amount, exc.message)
        self.refresh("screen", "payments")

    def refund(self, form: Json, request: Request) -> None:
        payment_id = object_id(request, "payment_id")
        text = form.get("amount", "").strip()
        amount = parse_amount(text, self.ui.identity.currency).minor if text else None
        with client_of(self.ui) as client:
            done = refunds.refund(self.ui.home, client, payment_id, amount)
        self.say(
            f"{self.ui.labels['refund']}: {format_minor(done['amount'], done['currency'])} "
            f"({payment_id}, {done['refund_id']})"
        )
        self.refresh("payments")
