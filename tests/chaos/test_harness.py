"""The harness itself: with no failure, a 20,000-event run passes every chaos check."""

from __future__ import annotations

import pytest

from tests.chaos.conftest import ChaosStackFactory
from tests.chaos.harness import ChaosRun


@pytest.mark.slow
def test_a_run_without_failure_passes_every_check(chaos_stack: ChaosStackFactory) -> None:
    stack = chaos_stack()
    with ChaosRun(stack) as run:
        figures = run.finish("no failure")
    assert figures.events >= 20_000
    assert figures.forwarded >= 20_000 // 5
    assert figures.status_503 == figures.connection_errors == 0
    assert sum(figures.restarts.values()) == 0
