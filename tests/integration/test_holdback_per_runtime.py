"""The classify path's Redis script holders are built once per Runtime, not per batch, stay bound
to the Runtime's client, survive a SCRIPT FLUSH (the scripts load again on NOSCRIPT) and are
forgotten with the client by Runtime.reset."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from mutt_app.config import Settings
from mutt_app.holdback import dedup, flapping, storms
from mutt_app.holdback.dedup import Repeats
from mutt_app.holdback.storms import Budgeted
from mutt_app.runtime import Runtime

HOLDERS: list[Callable[[Runtime], Any]] = [dedup.windows, storms.budgets, flapping.detector]


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime(settings)
    try:
        yield runtime
    finally:
        runtime.close()


@pytest.mark.parametrize("holder", HOLDERS)
def test_one_holder_per_runtime_bound_to_its_client(
    runtime: Runtime, holder: Callable[[Runtime], Any]
) -> None:
    first = holder(runtime)
    assert holder(runtime) is first
    assert first.client is runtime.redis
    assert first.script.registered_client is runtime.redis
    runtime.reset()
    again = holder(runtime)
    assert again is not first
    assert again.client is runtime.redis


def test_the_kept_scripts_load_again_after_a_script_flush(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    repeats = Repeats("fp", "a-1", 1, 1_000, "a-1", 60, b"{}")
    assert dedup.windows(runtime).observe("batch-1", [repeats]) == {"fp": (True, "a-1")}
    redis_client.script_flush()
    # NOSCRIPT: the kept Script loads itself again; the answer is what it would have been.
    again = Repeats("fp", "a-2", 1, 2_000, "a-2", 60, b"{}")
    assert dedup.windows(runtime).observe("batch-2", [again]) == {"fp": (False, "a-1")}
    redis_client.script_flush()
    held = storms.budgets(runtime).observe(
        "batch-3",
        [Budgeted("device:page:h", None, "t"), Budgeted("device:page:h", None, "t")],
        {"device:page:h": 1},
        {"device:page:h": b"{}"},
        60,
    )
    assert held == [False, True]
