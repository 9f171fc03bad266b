"""Hosts sending events no rule matches: one meta-alert per host per window, counted in Redis.

The count is shared by every classify worker (``lua/unhandled.lua``): exactly one of them sees its
host cross the threshold within a window, and raises the meta-alert.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis

from mutt_app.lua.loader import LuaScript

UNHANDLED_LUA = LuaScript("mutt_app.watch", "unhandled")


class UnhandledCounter:
    """Per-host counters of events that matched no rule; one meta-alert per host per window."""

    def __init__(
        self, client: redis.Redis, prefix: str, threshold: int, window_seconds: int
    ) -> None:
        self.prefix = prefix
        self.threshold = threshold
        self.window = window_seconds
        self.script = UNHANDLED_LUA.register(client)
        self.client = client

    def add(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Count unmatched events per hostname; returns the hosts that crossed the threshold now."""
        if not counts:
            return {}
        pipe = self.client.pipeline(transaction=False)
        hosts = list(counts)
        for host in hosts:
            keys = [f"{self.prefix}:{host}", f"{self.prefix}:triggered:{host}"]
            self.script(keys=keys, args=[counts[host], self.threshold, self.window], client=pipe)
        results = pipe.execute()
        return {host: int(n) for host, n in zip(hosts, results, strict=True) if int(n) > 0}
