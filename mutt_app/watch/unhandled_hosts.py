"""Hosts sending events no rule matches: one meta-alert per host per window, counted in Redis.

The count is shared by every classify worker (``lua/unhandled.lua``): exactly one of them sees its
host cross the threshold within a window, and raises the meta-alert.

Bounded. Each host's counter (or its triggered marker) lives one window (UNHANDLED_EXPIRY_SECONDS),
and at most UNHANDLED_MAX_HOSTS hosts get a counter per window (``<prefix>::new-hosts`` counts
them and lives one window too): a sender inventing host names cannot grow Redis past about twice
that many keys. Events of further new hosts are not counted until the window ends
(``mutt_unhandled_hosts_overflow_total``, and one warning per window).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import redis

from mutt_app import metrics
from mutt_app.lua.loader import LuaScript

log = logging.getLogger(__name__)

UNHANDLED_LUA = LuaScript("mutt_app.watch", "unhandled")
_OVER_CAP, _FIRST_OVER_CAP = -1, -2


class UnhandledCounter:
    """Per-host counters of events that matched no rule; one meta-alert per host per window."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        threshold: int,
        window_seconds: int,
        max_hosts: int,
    ) -> None:
        self.prefix = prefix
        self.threshold = threshold
        self.window = window_seconds
        self.max_hosts = max_hosts
        # A colon after the prefix's own: no host's counter (``<prefix>:<host>``) can be named so.
        self.hosts_key = f"{prefix}::new-hosts"
        self.script = UNHANDLED_LUA.register(client)
        self.client = client

    def add(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Count unmatched events per hostname; returns the hosts that crossed the threshold now."""
        if not counts:
            return {}
        pipe = self.client.pipeline(transaction=False)
        hosts = list(counts)
        for host in hosts:
            keys = [f"{self.prefix}:{host}", f"{self.prefix}:triggered:{host}", self.hosts_key]
            args = [counts[host], self.threshold, self.window, self.max_hosts]
            self.script(keys=keys, args=args, client=pipe)
        results = [int(n) for n in pipe.execute()]
        over = [host for host, n in zip(hosts, results, strict=True) if n < 0]
        if over:
            metrics.UNHANDLED_HOSTS_OVERFLOW.inc(sum(counts[host] for host in over))
        if _FIRST_OVER_CAP in results:
            log.warning(
                "unhandled events: over UNHANDLED_MAX_HOSTS (%d) hosts in this %d s window; events"
                " of further hosts (first: %s) are not counted until it ends",
                self.max_hosts,
                self.window,
                over[0],
            )
        return {host: n for host, n in zip(hosts, results, strict=True) if n > 0}
