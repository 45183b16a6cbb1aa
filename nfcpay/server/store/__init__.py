"""Storage: the database interface (:mod:`.db`) and its versioned schema (:mod:`.migrations`)."""

from __future__ import annotations

from nfcpay.server.store.db import Database, RetryableConflict, Row, Tx, open_database
from nfcpay.server.store.migrations import migrate

__all__ = ["Database", "RetryableConflict", "Row", "Tx", "migrate", "open_database"]
