"""The page's web application: one terminal, one role, one person (see :mod:`nfcpay.ui`).

:func:`create_app` builds it for the terminal whose home is given: the owner page for a
user terminal, the counter page for a merchant, the wallet page for a target. Every page
is server-rendered HTML (Jinja2, autoescaped); its live panels come over ``/events``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from nfcpay.client import PaymentClient
from nfcpay.errors import NfcPayError
from nfcpay.money import format_minor
from nfcpay.names import labelled
from nfcpay.terminals.account import connect
from nfcpay.terminals.home import Identity, TerminalHome
from nfcpay.ui.guard import FORM_KEY, Guard, Secrets
from nfcpay.ui.labels import translator
from nfcpay.ui.live import Hub, Swap, Taps

HERE = Path(__file__).parent
Json = dict[str, Any]


@dataclass(frozen=True)
class UiConfig:
    """How ``nfcpay ui`` was started: the terminal's home, its server and reader."""

    home: Path
    server_url: str | None = None
    device: str | None = None
    ca: Path | None = None
    lang: str = "en"
    #: Where the reader's lock (and a virtual reader's field) lives, as for the CLI.
    runtime_dir: Path | None = None


class Ui:
    """What every page shares: the terminal, its server, the live hub, the tap runner and
    the templates."""

    def __init__(self, config: UiConfig, secrets: Secrets) -> None:
        self.config = config
        self.secrets = secrets
        self.home = TerminalHome(config.home)
        self.identity: Identity = self.home.identity()
        self.hub = Hub()
        self.taps = Taps(config.device, config.runtime_dir)
        self.labels = translator(config.lang)
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape()
        )
        self.templates.filters["money"] = _money
        self.templates.filters["labelled"] = labelled

    def client(self) -> PaymentClient:
        """A signed client of this terminal's server (close it after use)."""
        return connect(self.home, self.config.server_url, verify=self.config.ca)

    def render(self, template: str, **context: Any) -> Markup:
        found = self.templates.get_template(template)
        # Safe: autoescaped templates; the HTML is a panel's, put in place as it is.
        return Markup(  # noqa: S704
            found.render(
                t=self.labels,
                me=self.identity,
                csrf=self.secrets.csrf,
                lang=self.config.lang,
                **context,
            )
        )


def _money(minor: int | None, currency: str) -> str:
    return "-" if minor is None else format_minor(minor, currency)


class Page:
    """One role's page: a full template, its live panels, and its actions (POST routes).

    A panel ``name`` is the element ``id="name"`` rendered from ``_name.html`` with
    :meth:`context`; ``flash`` (the last message for the person) is on every page.
    """

    template: ClassVar[str]
    panel_names: ClassVar[tuple[str, ...]]

    def __init__(self, ui: Ui) -> None:
        self.ui = ui
        self.message: str | None = None
        self.message_is_error = False

    def context(self) -> Json:
        """What the panels show now (may ask the server: call off the event loop)."""
        return {}

    def routes(self) -> list[BaseRoute]:
        return []

    def start(self) -> None:
        """Begin background work (the owner's notification feed)."""

    def stop(self) -> None:
        """End background work."""

    def panels(self, names: tuple[str, ...] | None = None) -> list[Swap]:
        context = self.context() | {"page": self}
        return [
            Swap(name, self.ui.render(f"_{name}.html", **context))
            for name in (names or ("flash", *self.panel_names))
        ]

    def refresh(self, *names: str) -> None:
        """Push these panels (all, if none named) to every open page."""
        for swap in self.panels(names or None):
            self.ui.hub.publish(swap)

    def say(self, message: str | None, *, error: bool = False) -> None:
        self.message, self.message_is_error = message, error
        self.refresh("flash")

    async def index(self, request: Request) -> Response:
        swaps = await run_in_threadpool(self.panels)
        html = self.ui.render(
            self.template, page=self, panels={swap.target: swap.html for swap in swaps}
        )
        return HTMLResponse(html)

    async def events(self, request: Request) -> Response:
        first = await run_in_threadpool(self.panels)
        return StreamingResponse(
            self.ui.hub.stream(first),
            media_type="text/event-stream",
            headers={"x-accel-buffering": "no"},
        )

    def action(self, work: Callable[[Json, Request], None]) -> Callable[[Request], Any]:
        """A POST endpoint: ``work`` with the checked form, off the event loop; an nfcpay
        error becomes the page's message; then back to the page (post/redirect/get)."""

        async def endpoint(request: Request) -> Response:
            form: Json = request.scope.get(FORM_KEY, {})
            try:
                await run_in_threadpool(work, form, request)
            except NfcPayError as exc:
                self.say(exc.message, error=True)
            return RedirectResponse("/", status_code=303)

        return endpoint


def create_app(config: UiConfig, secrets: Secrets) -> Guard:
    """The guarded application of the page for the terminal in ``config.home``."""
    from nfcpay.ui.counter import CounterPage
    from nfcpay.ui.owner import OwnerPage
    from nfcpay.ui.wallet import WalletPage

    ui = Ui(config, secrets)
    pages: dict[str, type[Page]] = {
        "user": OwnerPage,
        "merchant": CounterPage,
        "target": WalletPage,
    }
    page = pages[ui.identity.role](ui)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        page.start()
        try:
            yield
        finally:
            page.stop()
            ui.hub.close()

    routes: list[BaseRoute] = [
        Route("/", page.index),
        Route("/events", page.events),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        *page.routes(),
    ]
    return Guard(Starlette(routes=routes, lifespan=lifespan), secrets)


#: What an id in a page's URL may look like (``p_…``, ``g_…``): it goes into a server path.
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def object_id(request: Request, name: str) -> str:
    """The id in the URL's ``name`` part, refused unless it looks like one."""
    value = str(request.path_params[name])
    if not _ID.fullmatch(value):
        raise NfcPayError(f"{value!r} is not an id this page shows")
    return value


@contextlib.contextmanager
def client_of(ui: Ui) -> Iterator[PaymentClient]:
    client = ui.client()
    try:
        yield client
    finally:
        client.close()
