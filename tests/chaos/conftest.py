"""Chaos fixtures: a whole MUTT pipeline with the chaos settings (``make_stack`` is tests/conftest.py's)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.chaos.harness import CHAOS_ENV, start_pipeline
from tests.e2e.stack import Stack, StackFactory

ChaosStackFactory = Callable[..., Stack]


@pytest.fixture
def chaos_stack(make_stack: StackFactory) -> ChaosStackFactory:
    """Build and start a pipeline (``start_pipeline``) with CHAOS_ENV plus ``env``.

    ``forward_threads``, ``classify_concurrency``, ``classify_workers``, ``forward_workers`` and
    ``classify_pool`` go to start_pipeline; any other keyword is environment (e.g. REDIS_URL of a Sentinel-watched
    master). Stopped after the test.
    """

    def build(
        *,
        forward_threads: int = 1,
        classify_concurrency: int = 2,
        classify_workers: int = 1,
        forward_workers: int = 1,
        classify_pool: str = "solo",
        **env: str,
    ) -> Stack:
        stack = make_stack(**{**CHAOS_ENV, **env})
        return start_pipeline(
            stack,
            forward_threads=forward_threads,
            classify_concurrency=classify_concurrency,
            classify_workers=classify_workers,
            forward_workers=forward_workers,
            classify_pool=classify_pool,
        )

    return build
