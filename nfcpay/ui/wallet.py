"""The wallet page (target terminal): the grants held here with what is left of each, the
receipts of payments made with them, refreshed from the server when it answers, and the
inbox of grants sent here through the server (``target inbox``), each taken with "receive"
as ``target receive --remote`` takes it: fetched, checked, kept, then acknowledged.

A worker watches the server for new deliveries (a long poll while none waits), so a grant
sent here appears in the inbox without a reload.
"""

from __future__ import annotations

import threading
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from nfcpay.client import PaymentClient
from nfcpay.errors import ApiError, NfcPayError
from nfcpay.names import labelled
from nfcpay.terminals import remote, wallet
from nfcpay.ui.app import Json, Page, client_of, object_id

#: Seconds one long poll for deliveries waits on the server while none is waiting.
INBOX_WAIT_S = 10.0
#: Seconds between looks while some wait (the server answers such a poll at once).
INBOX_RECHECK_S = 2.0


class WalletPage(Page):
    template = "wallet.html"
    panel_names = ("inbox", "held", "receipts")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stop = threading.Event()

    def context(self) -> Json:
        try:
            with client_of(self.ui) as client:
                found = wallet.wallet(self.ui.home, client)
                inbox, problem = self._inbox(client)
        except ApiError:
            found = wallet.wallet(self.ui.home)
            inbox, problem = [], None
        receipts = sorted(found.receipts, key=lambda r: r.created_at, reverse=True)
        return {
            "held": [wallet.wallet_view(held, found.names) for held in found.grants],
            "receipts": receipts,
            "names": found.names,
            "inbox": inbox,
            "inbox_problem": problem,
            "offline": not found.refreshed,
        }

    def _inbox(self, client: PaymentClient) -> tuple[list[Json], str | None]:
        """The deliveries waiting here as the inbox shows them, or why they cannot be read (a
        record this terminal refuses is left on the server, untouched; a server too old to
        deliver grants says so): the held grants are shown all the same."""
        try:
            waiting = remote.inbox(self.ui.home, client)
        except NfcPayError as exc:
            return [], exc.message
        return [
            {
                "delivery_id": item["delivery_id"],
                "grant_id": record.grant_id,
                "from": item["from"],
                "amount_cap": record.amount_cap,
                "currency": record.currency,
                "max_uses": record.max_uses,
                "created_at": item["created_at"],
            }
            for item, record in waiting
        ], None

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/refresh", self.action(self.refresh_all), methods=["POST"]),
            Route("/inbox/receive", self.action(self.receive_all), methods=["POST"]),
            Route("/inbox/{delivery_id}/receive", self.action(self.receive_one), methods=["POST"]),
        ]

    def refresh_all(self, _: Json, __: Request) -> None:
        self.refresh()

    def receive_all(self, _: Json, __: Request) -> None:
        with client_of(self.ui) as client:
            self._received(remote.receive(self.ui.home, client))

    def receive_one(self, _: Json, request: Request) -> None:
        delivery_id = object_id(request, "delivery_id")
        with client_of(self.ui) as client:
            self._received([remote.receive_one(self.ui.home, client, delivery_id)])

    def _received(self, got: list[remote.Received]) -> None:
        """Say what was received and show it among the held grants."""
        if got:
            senders = [item.delivery["from"] for item in got]
            shown = ", ".join(
                f"{item.held.grant_id} ({labelled(sender['label'], sender['terminal_id'])})"
                for item, sender in zip(got, senders, strict=True)
            )
            self.message, self.message_is_error = f"{self.ui.labels['received']}: {shown}", False
        self.refresh()

    def start(self) -> None:
        threading.Thread(target=self._watch, name="inbox", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        """Show the inbox again whenever the deliveries waiting here change."""
        shown: frozenset[str] | None = None
        while not self._stop.is_set():
            try:
                with client_of(self.ui) as client:
                    while not self._stop.is_set():
                        idle = shown == frozenset()  # none waits: the server holds the poll
                        waiting = client.deliveries(wait=INBOX_WAIT_S if idle else 0)
                        now = frozenset(item["delivery_id"] for item in waiting)
                        if now != shown:
                            shown = now
                            self.refresh("inbox", "flash")
                        if now:
                            self._stop.wait(INBOX_RECHECK_S)
            except NfcPayError:
                self._stop.wait(2.0)  # the server is away (or too old): try again shortly
