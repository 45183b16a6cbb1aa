"""The nfcpay payment server: HTTP API (:mod:`.app`, :mod:`.routes`), services cut by domain
(:mod:`.services`), storage on SQLite or PostgreSQL (:mod:`.store`) and the double-entry
:mod:`.ledger`. It imports nothing from ``cli``, ``terminals`` or ``transport``."""

from __future__ import annotations

from nfcpay.server.app import create_app
from nfcpay.server.settings import ServerSettings, init_data_dir

__all__ = ["ServerSettings", "create_app", "init_data_dir"]
