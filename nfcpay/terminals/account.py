"""Creating a terminal (key + registration) and opening its signed server connection."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from nfcpay.client import PaymentClient
from nfcpay.errors import ConfigError
from nfcpay.money import DEFAULT_CURRENCY, check_currency
from nfcpay.terminals.home import ROLES, Identity, TerminalHome


def init_terminal(
    home: TerminalHome,
    *,
    role: str,
    label: str,
    server_url: str,
    currency: str = DEFAULT_CURRENCY,
    merchant: Mapping[str, Any] | None = None,
    transport: httpx.BaseTransport | None = None,
    verify: Path | None = None,
    time_zone: str | None = None,
) -> tuple[Identity, dict[str, Any]]:
    """Create this terminal's key, register it with the server and save its identity.

    ``time_zone``: the IANA zone its grants' allowances count in (checked by the caller).

    ``verify``: the CA file for an https:// server (None: the system's CAs). Returns the
    identity and the server's registration answer. The key is written before
    registering, the identity only after the server accepted it: a failed registration
    leaves a home that ``init`` may simply be run on again.
    """
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if (role == "merchant") != (merchant is not None):
        raise ConfigError("merchant details (--merchant-name ...) go with --role merchant only")
    check_currency(currency)
    key = home.create_key()
    client, answer = PaymentClient.register_terminal(
        server_url,
        key,
        role=role,
        label=label,
        merchant=merchant,
        transport=transport,
        verify=verify,
    )
    client.close()
    identity = Identity(
        terminal_id=answer["terminal_id"],
        role=role,
        label=label,
        server_url=server_url.rstrip("/"),
        currency=currency,
        merchant_id=answer.get("merchant_id"),
        categories=answer["merchant"]["categories"] if "merchant" in answer else None,
        time_zone=time_zone,
    )
    home.save_identity(identity)
    return identity, answer


def connect(
    home: TerminalHome,
    server_url: str | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    timeout: float | None = None,
    verify: Path | None = None,
) -> PaymentClient:
    """A signed client for this terminal (``server_url`` overrides the one saved at init;
    ``verify`` is the CA file for an https:// server)."""
    identity = home.identity()
    options: dict[str, Any] = {"transport": transport, "verify": verify}
    if timeout is not None:
        options["timeout"] = timeout
    return PaymentClient(
        server_url or identity.server_url, identity.terminal_id, home.private_key(), **options
    )
