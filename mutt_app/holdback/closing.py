"""Windows in Redis that hand what they held to a flush job when they close.

Deduplication, storm budgets, flapping and maintenance-window counts each keep their windows this
way, under their own prefix; the Lua that closes a window is the shared prelude's
``close_window``, used by ``lua/close_windows.lua`` here and by each stage's script when its next
event finds a window closed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
import redis

from mutt_app.lua.loader import LuaScript

CLOSE_WINDOWS_LUA = LuaScript("mutt_app.holdback", "close_windows")


class ClosingWindows:
    """Windows in Redis that hand what they held to the flush job when they close.

    A window is a hash with at least ``id`` (unique per window), ``closes`` (epoch ms) and
    ``count`` (what it held). One that held something is in the due set (scored by ``closes``)
    and never expires; when it closes, its fields move, as JSON, to the closed hash under its id
    (:meth:`close_due`, or the owning script when the next event finds it closed). The flush job
    reads them (:meth:`pending`), publishes one alert each, then calls :meth:`forget`: a flush
    killed in between publishes the same alerts again, with the same external_ids.
    Deduplication, storm budgets and flapping each keep their windows this way, under their prefix.
    """

    def __init__(self, client: redis.Redis, prefix: str, remember_seconds: int) -> None:
        self.client = client
        self.prefix = prefix
        self.remember = remember_seconds
        self.closed_key = f"{prefix}:closed"
        self.due_key = f"{prefix}:due"
        self.close_script = CLOSE_WINDOWS_LUA.register(client)

    def batch_keys(self, batch_key: str, windows: Iterable[str]) -> list[str]:
        """The KEYS of a script that records one batch in these windows: the batch's memo (the
        prelude's batch memos: what a redelivered batch is answered), the closed hash, the due
        set, then ``windows``.

        The memo is a hash under ``:memo:``; releases before it kept some memos as strings under
        ``:batch:``, so the two never meet during a rolling upgrade (a type error in either).
        """
        return [f"{self.prefix}:memo:{batch_key}", self.closed_key, self.due_key, *windows]

    def close_due(self, limit: int = 1000) -> int:
        """Move the windows that closed with repeats to the closed set; returns how many moved."""
        seconds, micros = self.client.time()
        now_ms = seconds * 1000 + micros // 1000
        due = self.client.zrangebyscore(self.due_key, "-inf", now_ms, start=0, num=limit)
        if not due:
            return 0
        keys = [self.closed_key, self.due_key, *(k.decode() for k in due)]
        return int(self.close_script(keys=keys, args=[]))

    def pending(self, limit: int = 1000) -> list[tuple[str, dict[str, Any]]]:
        """Closed windows not yet forgotten (at most about ``limit``): (id, fields)."""
        found = []
        for window_id, raw in self.client.hscan_iter(self.closed_key, count=limit):
            found.append((window_id.decode(), orjson.loads(raw)))
            if len(found) >= limit:
                break
        return found

    def forget(self, window_ids: Sequence[str]) -> None:
        """The alerts of these closed windows are in the outbox: drop them."""
        if window_ids:
            self.client.hdel(self.closed_key, *window_ids)

    def flush(
        self,
        build: Callable[[str, dict[str, Any]], dict[str, Any]],
        publish: Callable[[list[dict[str, Any]]], None],
    ) -> list[dict[str, Any]]:
        """Publish one alert, ``build(id, fields)``, per window that closed holding something,
        then forget those windows; returns the alerts published.

        The alerts are in the outbox before the windows are forgotten: a flush killed in between
        publishes them again, with the same external_ids, which the forward task delivers once.
        """
        self.close_due()
        closed = self.pending()
        if not closed:
            return []
        alerts = [build(window_id, data) for window_id, data in closed]
        publish(alerts)
        self.forget([window_id for window_id, _ in closed])
        return alerts
