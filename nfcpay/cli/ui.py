"""``nfcpay ui``: this terminal's page in a browser on this machine."""

from __future__ import annotations

import os
import sys

import click

from nfcpay.cli.output import CliContext
from nfcpay.cli.terminal import home_of

PAGES = {"user": "owner", "merchant": "counter", "target": "wallet"}


@click.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port on 127.0.0.1 (0: a free one).",
)
@click.option(
    "--lang",
    type=click.Choice(["en", "ko"]),
    help="Language of the page's labels [default: Korean under a Korean locale, else English].",
)
@click.pass_obj
def ui(obj: CliContext, port: int, lang: str | None) -> None:
    """Serve this terminal's page on 127.0.0.1, acting with this terminal's own key.

    A user terminal gets the owner page (sources, grants, give by tap, send to a terminal,
    revoke, live notifications), a merchant the counter page (charge, result, refunds), a
    target the wallet page (held grants, receipts, the inbox of grants sent to it). Open the
    printed link, token included, in a browser on this machine; without the token the page
    answers 403. While the page waits for a tap it holds the reader (--device), and a CLI
    tap command is told so; between taps the reader is free. Ctrl-C stops it.
    """
    from nfcpay.ui.app import UiConfig
    from nfcpay.ui.labels import language
    from nfcpay.ui.serve import serve

    _, identity = home_of(obj)
    config = UiConfig(
        home=obj.home,
        server_url=obj.server_url,
        device=obj.device,
        ca=obj.ca,
        lang=language(lang, os.environ),
        runtime_dir=obj.runtime_dir,
    )
    page = PAGES[identity.role]

    def ready(url: str) -> None:
        obj.emit(
            {"ok": True, "url": url, "page": page, "terminal_id": identity.terminal_id},
            f"The {page} page of {identity.label} ({identity.terminal_id}) is at\n  {url}\n"
            "Open it in a browser on this machine (the link is the key: keep it to yourself). "
            "Ctrl-C stops it.",
        )
        sys.stdout.flush()

    serve(config, port, ready)
