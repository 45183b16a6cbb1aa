"""Signature headers built by hand, each part open to tampering (what the client would
never send)."""

from __future__ import annotations

import json
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nfcpay.client import signed_headers
from nfcpay.testing.server import Terminal


def sign(
    terminal: Terminal | None,
    method: str,
    path: str,
    body: bytes,
    *,
    as_id: str | None = None,
    key: Any = None,
    skew: float = 0,
    nonce: str | None = None,
    signed_path: str | None = None,
    signed_body: bytes | None = None,
) -> dict[str, str]:
    """Signature headers, each part open to tampering."""
    terminal_id = as_id or (terminal.terminal_id if terminal else "new")
    signer = key or (terminal.private_key if terminal else None)
    signed = signed_headers(
        terminal_id,
        signer,
        method,
        signed_path or path,
        body if signed_body is None else signed_body,
        timestamp=int(time.time() + skew),
        nonce=nonce,
    )
    return {**signed, "Content-Type": "application/json"}


PATH = "/v1/funding-sources"


BODY = json.dumps({"kind": "wallet", "balance": 1000, "currency": "KRW"}).encode()


def headers_for(
    terminal: Terminal,
    *,
    body: bytes = BODY,
    path: str = PATH,
    method: str = "POST",
    timestamp: int | None = None,
    nonce: str | None = None,
    key: Ed25519PrivateKey | None = None,
) -> dict[str, str]:
    signer = key or terminal.private_key
    signed = signed_headers(
        terminal.terminal_id, signer, method, path, body, timestamp=timestamp, nonce=nonce
    )
    return {**signed, "Content-Type": "application/json"}
