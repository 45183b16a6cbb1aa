"""Fault injection helpers: a TCP proxy that plays an unreachable PostgreSQL, and raw
request helpers that see status codes and headers the client would retry away."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from nfcpay.client import PaymentClient
from nfcpay.testing.server import Terminal


class TcpProxy:
    """Forwards a local port to ``target``. :meth:`cut` closes the port and every
    connection (the database "went away"); :meth:`restore` listens on the same port again;
    :meth:`trip` breaks one connection at a chosen message (e.g. a COMMIT).
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.create_server(("127.0.0.1", 0))
        self.port: int = probe.getsockname()[1]
        probe.close()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._trip: tuple[bytes | None, bytes, bool] | None = None
        self.tripped = threading.Event()
        self.restore()

    def trip(self, marker: bytes, *, deliver: bool, after: bytes | None = None) -> None:
        """Break the connection whose client next sends bytes holding ``marker`` (once it
        has sent ``after``, if given): the message reaches the server (``deliver``) and the
        server's answer is swallowed, or it is dropped; then both sides are closed. Once;
        :attr:`tripped` is set when done."""
        self.tripped.clear()
        self._trip = (after, marker, deliver)

    def restore(self) -> None:
        self._stop.clear()
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener.setblocking(False)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def cut(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def url_for(self, db_url: str) -> str:
        """``db_url`` with its host and port replaced by this proxy's."""
        parts = urlsplit(db_url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, None)
        peers: dict[socket.socket, socket.socket] = {}
        clients: set[socket.socket] = set()
        #: Server sides whose next answer is swallowed, and then the pair closed.
        doomed: set[socket.socket] = set()

        def close(sock: socket.socket) -> None:
            for s in (sock, peers.pop(sock, None)):
                if s is not None:
                    peers.pop(s, None)
                    with contextlib.suppress(KeyError, ValueError):
                        sel.unregister(s)
                    s.close()

        try:
            while not self._stop.is_set():
                for key, _ in sel.select(0.05):
                    sock: Any = key.fileobj
                    if sock is self._listener:
                        client, _ = self._listener.accept()
                        clients.add(client)
                        upstream = socket.create_connection(self.target)
                        for a, b in ((client, upstream), (upstream, client)):
                            peers[a] = b
                            sel.register(a, selectors.EVENT_READ, None)
                        continue
                    if sock not in peers:
                        continue
                    deliver: bool | None = None
                    try:
                        data = sock.recv(65536)
                        deliver = self._tripped_by(data) if sock in clients else None
                        if sock in doomed or deliver is False:
                            data = b""  # the answer swallowed, or the message dropped
                        elif deliver:
                            peers[sock].sendall(data)
                            doomed.add(peers[sock])
                        elif data:
                            peers[sock].sendall(data)
                    except OSError:
                        data = b""
                    if not data:
                        if sock in doomed or deliver is False:
                            self.tripped.set()
                        doomed.discard(sock)
                        clients.discard(sock)
                        close(sock)
        finally:
            for s in list(peers):
                close(s)
            sel.unregister(self._listener)
            self._listener.close()
            sel.close()

    def _tripped_by(self, data: bytes) -> bool | None:
        """None if ``data`` does not trip the proxy, else whether to deliver it."""
        if self._trip is None:
            return None
        after, marker, deliver = self._trip
        if after is not None:
            if after in data:
                self._trip = (None, marker, deliver)
            return None
        if marker not in data:
            return None
        self._trip = None
        return deliver


def no_retry(terminal: Terminal, url: str) -> PaymentClient:
    """A second client for ``terminal`` that reports the first answer (no retries)."""
    return PaymentClient(url, terminal.terminal_id, terminal.private_key, max_retries=0)


def health(url: str) -> httpx.Response:
    return httpx.get(f"{url}/v1/health", timeout=30)
