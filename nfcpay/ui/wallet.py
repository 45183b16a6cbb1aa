"""The wallet page (target terminal): the grants held here with what is left of each, and
the receipts of payments made with them, refreshed from the server when it answers.

The inbox of grants sent through the server (``target inbox``) is being built elsewhere:
its panel belongs beside "held" in ``wallet.html`` and :attr:`WalletPage.panel_names`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from nfcpay.errors import ApiError
from nfcpay.terminals import wallet
from nfcpay.ui.app import Json, Page, client_of


class WalletPage(Page):
    template = "wallet.html"
    panel_names = ("held", "receipts")

    def context(self) -> Json:
        try:
            with client_of(self.ui) as client:
                found = wallet.wallet(self.ui.home, client)
        except ApiError:
            found = wallet.wallet(self.ui.home)
        receipts = sorted(found.receipts, key=lambda r: r.created_at, reverse=True)
        return {
            "held": [wallet.wallet_view(held) for held in found.grants],
            "receipts": receipts,
            "offline": not found.refreshed,
        }

    def routes(self) -> list[BaseRoute]:
        return [Route("/refresh", self.action(self.refresh_all), methods=["POST"])]

    def refresh_all(self, _: Json, __: Request) -> None:
        self.refresh()
