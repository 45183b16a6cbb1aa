"""Every trace in ``tests/traces/`` replays against its emulated chip with no mismatch.

A trace sent from a real counter (``--trace FILE``) goes into ``tests/traces/`` (named
``<chip>-<what>.jsonl``); from then on every CI run checks that the emulator answers as
that chip did. ``tests/traces/README.md`` says how to add one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nfcpay.transport.virtual.replay import replay

TRACES = sorted((Path(__file__).parents[2] / "traces").glob("*.jsonl"))


def test_there_is_a_trace_to_replay() -> None:
    assert TRACES, "tests/traces/ holds no trace"


@pytest.mark.parametrize("trace", TRACES, ids=[t.stem for t in TRACES])
def test_the_emulator_answers_as_the_traced_chip(trace: Path) -> None:
    mismatches = replay(trace)
    assert not mismatches, "\n".join(map(str, mismatches[:5]))
