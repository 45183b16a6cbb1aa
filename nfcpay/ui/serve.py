"""Serving a page: a socket bound to 127.0.0.1 only, fresh secrets, uvicorn without access
logs (a logged request line would carry the token)."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable

from nfcpay.ui.app import UiConfig, create_app
from nfcpay.ui.guard import Secrets

#: The only address a page is served on: nothing listens beyond this machine.
HOST = "127.0.0.1"


def bind(port: int = 0) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` (0: a free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {HOST}:{port}: {exc.strerror}") from exc
    sock.listen(128)
    return sock


def serve(config: UiConfig, port: int, ready: Callable[[str], None]) -> None:
    """Serve the page for ``config`` until interrupted; ``ready`` gets the URL to open (with
    its token) once the socket listens."""
    import uvicorn

    sock = bind(port)
    actual = int(sock.getsockname()[1])
    keys = Secrets(secrets.token_urlsafe(32), secrets.token_urlsafe(32), actual)
    app = create_app(config, keys)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=1,
        )
    )
    ready(f"http://{HOST}:{actual}/?token={keys.token}")
    server.run(sockets=[sock])
