"""The examples in the record modules' docstrings run and hold (one per record type, and
the presentation built from them)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "hello",
    "grant",
    "ack",
    "split",
    "challenge",
    "means",
    "presentation",
    "result",
    "samples",
]


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name: str) -> None:
    module = importlib.import_module(f"nfcpay.records.{name}")
    failed, attempted = doctest.testmod(module)
    assert attempted > 0 and failed == 0
