"""The owner page (user terminal): funding sources; each grant with bars of the amount and
the uses left, its expiry, limits and the target's label; give by tap (waits for the tap,
live status, then the fingerprint to confirm); revoke; and the live notification feed, where
misuse alarms stand out; send to a terminal through the server (``user send``: no tap),
shown as sent, then as delivered once the ``grant_delivered`` notification comes in.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from nfcpay.errors import ApiError, NfcPayError
from nfcpay.money import parse_amount
from nfcpay.records.fields import identifier
from nfcpay.terminals import remote, user
from nfcpay.terminals.user import Confirmation, Given, Rights
from nfcpay.transport.reader import Reader
from nfcpay.ui.app import Json, Page, client_of, object_id

#: Seconds "give by tap" waits for the target's tap.
GIVE_TIMEOUT_S = 120.0
#: Seconds the owner has to confirm who tapped (the server allows 120 from the tap).
CONFIRM_TIMEOUT_S = 60.0
#: Notifications kept on the page, newest first.
FEED_SIZE = 30
#: Seconds one long poll for notifications waits on the server.
FEED_WAIT_S = 10.0
#: Notification kinds that mean someone tried a grant they should not have: shown as alarms.
ALARMS = frozenset(
    {
        "terminal_not_allowed",
        "usage_auth_mismatch",
        "forged_presentation",
        "grant_locked",
        "bill_mismatch",
    }
)
EXPIRIES = {
    "": None,
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "2h": timedelta(hours=2),
    "1d": timedelta(days=1),
}


@dataclass(frozen=True)
class Giving:
    """The hand-over under way: ``phase`` idle, waiting, confirm, done or error."""

    phase: str = "idle"
    text: str = ""
    given: Given | None = None


@dataclass(frozen=True)
class Sending:
    """The last grant sent through the server: ``phase`` idle, sent or delivered."""

    phase: str = "idle"
    sent: remote.Sent | None = None

    @property
    def grant_id(self) -> str | None:
        return None if self.sent is None else str(self.sent.grant["grant_id"])


class OwnerPage(Page):
    template = "owner.html"
    panel_names = ("give", "send", "grants", "sources", "feed")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.giving = Giving()
        self.sending = Sending()
        self.feed: deque[Json] = deque(maxlen=FEED_SIZE)
        self._answer: Confirmation | None = None
        self._answered = threading.Event()
        self._stop = threading.Event()

    def context(self) -> Json:
        base = {
            "giving": self.giving,
            "sending": self.sending,
            "feed": list(self.feed),
            "alarms": ALARMS,
        }
        try:
            with client_of(self.ui) as client:
                sources, grants = client.list_sources(), client.list_grants()
        except ApiError:
            return base | {"sources": [], "grants": [], "offline": True}
        grants.sort(key=lambda g: str(g.get("created_at", "")), reverse=True)
        return base | {
            "sources": sources,
            "grants": grants,
            "offline": False,
        }

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/give", self.action(self.give), methods=["POST"]),
            Route("/give/answer", self.action(self.answer), methods=["POST"]),
            Route("/send", self.action(self.send), methods=["POST"]),
            Route("/grants/{grant_id}/revoke", self.action(self.revoke), methods=["POST"]),
        ]

    # --- give by tap ---------------------------------------------------------------------

    def give(self, form: Json, _: Request) -> None:
        rights = self._rights(form)
        if not self.ui.taps.start(self._tap(rights), self._settle, self._failed):
            raise NfcPayError(self.ui.labels["busy"])
        self.giving = Giving("waiting", self.ui.labels["waiting_tap"])
        self.say(None)
        self.refresh("give")

    def _rights(self, form: Json) -> Rights:
        cap = parse_amount(form.get("amount", ""), self.ui.identity.currency).minor
        uses_text = form.get("uses", "1").strip() or "1"
        if not uses_text.isdigit() or not 1 <= int(uses_text) <= 1_000_000:
            raise NfcPayError(f"uses must be a whole number from 1 to 1,000,000, not {uses_text!r}")
        if form.get("expires", "") not in EXPIRIES:
            raise NfcPayError("choose the expiry from the list")
        purpose = form.get("purpose", "").strip()
        return Rights(
            amount_cap=cap,
            max_uses=int(uses_text),
            expires_in=EXPIRIES[form.get("expires", "")],
            purposes=(purpose,) if purpose else (),
        )

    def _tap(self, rights: Rights) -> Callable[[Reader], Given]:
        def tap(reader: Reader) -> Given:
            with client_of(self.ui) as client:
                return user.give(
                    self.ui.home,
                    client,
                    reader,
                    rights,
                    timeout=GIVE_TIMEOUT_S,
                    status=self._status,
                )

        return tap

    def _status(self, text: str) -> None:
        self.giving = Giving("waiting", text)
        self.refresh("give")

    def _settle(self, given: Given) -> None:
        """With the reader released: ask the owner about whoever tapped, then show it."""
        self._answered.clear()
        with client_of(self.ui) as client:
            given = user.confirm_given(self.ui.home, client, given, self._ask)
        self.giving = Giving("done", given.confirmation.value, given)
        self.refresh("give", "grants")

    def _ask(self, given: Given) -> Confirmation:
        self.giving = Giving("confirm", "", given)
        self.refresh("give")
        if not self._answered.wait(CONFIRM_TIMEOUT_S) or self._answer is None:
            return Confirmation.TIMED_OUT
        return self._answer

    def answer(self, form: Json, _: Request) -> None:
        if self.giving.phase != "confirm":
            raise NfcPayError("no tapped terminal is waiting for your answer")
        yes = form.get("answer") == "yes"
        self._answer = Confirmation.CONFIRMED if yes else Confirmation.DECLINED
        self._answered.set()

    def _failed(self, exc: NfcPayError) -> None:
        self.giving = Giving("error", exc.message)
        self.refresh("give", "grants")

    # --- send through the server --------------------------------------------------------

    def send(self, form: Json, _: Request) -> None:
        """``user send``: a new grant bound to the named target, or the grant named."""
        to = _form_id(form, "to", "t", "target terminal id")
        grant_id = _form_id(form, "grant", "g", "grant id")
        if to is None and grant_id is None:
            raise NfcPayError("name the target terminal id to send the grant to")
        what = grant_id or self._rights(form)
        with client_of(self.ui) as client:
            sent = remote.send(self.ui.home, client, what, to=to)
        self.sending = Sending("sent", sent)
        self.say(None)
        self.refresh("send", "grants")

    def _delivered(self, found: list[Json]) -> None:
        """The grant last sent has reached its target: say so beside the form."""
        sent = self.sending.grant_id
        if sent is not None and any(
            n["kind"] == "grant_delivered" and n.get("grant_id") == sent for n in found
        ):
            self.sending = replace(self.sending, phase="delivered")
            self.refresh("send")

    # --- revoke and the feed -------------------------------------------------------------

    def revoke(self, _: Json, request: Request) -> None:
        grant_id = object_id(request, "grant_id")
        with client_of(self.ui) as client:
            grant = client.revoke_grant(grant_id)
        self.say(f"{self.ui.labels['revoke']}: {grant['grant_id']} ({grant['status']})")
        self.refresh("grants")

    def start(self) -> None:
        threading.Thread(target=self._follow, name="notifications", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _follow(self) -> None:
        """Long-poll the server for notifications until stopped; each batch goes to the top
        of the feed, and the grants are shown again (a use changes what is left)."""
        after: str | None = None
        first = True
        while not self._stop.is_set():
            try:
                with client_of(self.ui) as client:
                    while not self._stop.is_set():
                        found = client.notifications(after=after, wait=0 if first else FEED_WAIT_S)
                        if found:
                            after = found[-1]["notification_id"]
                            self.feed.extendleft(found)
                            self.refresh("feed", "grants")
                            self._delivered(found)
                        first = False
            except NfcPayError:
                self._stop.wait(2.0)  # the server is away: try again shortly


def _form_id(form: Json, name: str, prefix: str, what: str) -> str | None:
    """The id typed in field ``name`` (None if left empty), refused unless it looks like
    one: it goes into a server request."""
    text = str(form.get(name, "")).strip()
    if not text:
        return None
    if not identifier(prefix).pattern.fullmatch(text):
        raise NfcPayError(f"{what} must look like {prefix}_3fz7q2m4k9xw6a5b, not {text[:40]!r}")
    return text
