"""The Moog rate limit, shared by every worker on every host (MOOG_RATE_LIMIT per MOOG_RATE_PERIOD).

A sliding-window log in Redis (``lua/rate_limit.lua``): admitted requests are counted until their
answer arrives, and refused ones wait in their lane's line for a turn.
"""

from __future__ import annotations

import redis
from redis.client import Pipeline

from mutt_app.lua.loader import LuaScript

RATE_LIMIT_LUA = LuaScript("mutt_app.forwarding", "rate_limit")
RATE_FINISH_LUA = LuaScript("mutt_app.forwarding", "rate_finish")


class RateLimiter:
    """A rate limit shared by every worker on every host (MOOG_RATE_LIMIT per MOOG_RATE_PERIOD)."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.key = key
        self.script = RATE_LIMIT_LUA.register(client)
        self.finish_script = RATE_FINISH_LUA.register(client)

    def acquire(
        self,
        limit: int,
        period: float,
        token: str,
        flight: float = 0.0,
        longest_wait: float = 60.0,
        *,
        reserved: int = 0,
        page: bool = False,
    ) -> float:
        """Take a slot for a request that may last ``flight`` seconds.

        ``reserved`` slots of each window are kept for pages: a page (``page=True``) may fill the
        whole ``limit``, any other request only ``limit - reserved`` (at least one). Returns 0.0 when
        admitted, else the seconds to wait before trying again: the caller's turn in its lane's
        waiting line, at most ``longest_wait``.
        """
        cap = limit if page else max(limit - reserved, 1)
        tail = f"{self.key}:tail:page" if page else f"{self.key}:tail"
        admitted, wait_ms = self.script(
            keys=[self.key, tail], args=[period, cap, token, flight, longest_wait]
        )
        return 0.0 if int(admitted) else max(int(wait_ms), 1) / 1000

    def finish(self, token: str, pipe: Pipeline | None = None) -> None:
        """The request admitted as ``token`` got its answer: its slot now ages from this moment.

        With ``pipe``, the command is queued on that pipeline instead of sent now.
        """
        self.finish_script(keys=[self.key], args=[token], client=pipe)
