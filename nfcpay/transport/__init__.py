"""NFC transport: the only package that imports nfcpy (work in progress)."""

from __future__ import annotations
