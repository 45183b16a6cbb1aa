"""Vector tables on test classes become parametrized cases (as ndeflib's tests do)."""

from __future__ import annotations

import pytest

_TABLES = {"valid": "valid", "decode_error": "decode_errors", "init_error": "init_errors"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, attribute in _TABLES.items():
        if fixture in metafunc.fixturenames:
            table = getattr(metafunc.cls, attribute)
            metafunc.parametrize(fixture, table, ids=[str(i) for i in range(len(table))])
