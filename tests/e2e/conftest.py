"""Fixtures that start MUTT's real processes against the test's PostgreSQL and Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.e2e.stack import Stack

StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack(pg_url: str, redis_url: str, tmp_path) -> Iterator[StackFactory]:  # type: ignore[no-untyped-def]
    """Build a :class:`Stack` with extra environment; every stack is stopped after the test."""
    stacks: list[Stack] = []

    def build(**env: str) -> Stack:
        base = {
            "DATABASE_URL": pg_url,
            "REDIS_URL": redis_url,
            "MUTT_DATA_DIR": str(tmp_path / "data"),
            "LOG_LEVEL": "INFO",
        }
        stack = Stack({**base, **env}, tmp_path)
        stacks.append(stack)
        return stack

    yield build
    for stack in stacks:
        stack.stop()
