"""Acceptance fixtures for issue 2: one REAL ``nfcpay server run`` process per test module,
on a test clock (``harness.server.advance(seconds)`` instead of sleeping).

Every case builds its own terminals, sources and grants, so cases share the process but not
state; :meth:`Harness.snapshot` proves a refused or declined request changed nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.harness import Harness, harness_on, start_server


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with harness_on(start_server(tmp_path_factory.mktemp("server"), test_clock=True)) as harness:
        yield harness
