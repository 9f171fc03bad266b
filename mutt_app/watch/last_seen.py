"""The last-seen set: each host's latest event time, written by classify, read and bounded by the
heartbeat check (:mod:`mutt_app.watch.heartbeats`).

One sorted set, ``mutt:lastseen`` (host -> epoch ms of its latest ``received_at``), written with one
``ZADD GT`` per classify batch, so a redelivered or late batch never moves a host back in time.
Bounded: after each run the check drops the hosts silent for longer than the longest active
heartbeat's interval plus HEARTBEAT_LAST_SEEN_MARGIN_SECONDS, and past HEARTBEAT_LAST_SEEN_MAX_HOSTS
the longest silent (:func:`prune_last_seen`, in slices, so that no command holds Redis long).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import redis

from mutt_app import metrics
from mutt_app.events.schema import Event
from mutt_app.lua.loader import LuaScript
from mutt_app.watch.heartbeat_quiet import iso

log = logging.getLogger(__name__)

LAST_SEEN_KEY = "mutt:lastseen"
PRUNE_LUA = LuaScript("mutt_app.watch", "last_seen_prune")
_PRUNE_SLICE = 10_000
_PRUNE_SLICES_PER_RUN = 50
_ZMSCORE_CHUNK = 1000


def record_seen(client: redis.Redis | Any, events: Iterable[Event]) -> int:
    """Record each host's latest ``received_at`` among ``events`` (one ZADD GT); returns how
    many hosts. ``client`` may be a pipeline.

    Every host is sent every batch, with no memory of what this process wrote lately: the write is
    usually queued in the settle's pipeline, which can still fail, and a memory updated before
    the write lands would make the batch's retry skip it."""
    latest: dict[str, int] = {}
    stamp: datetime | None = None
    moment = 0
    for event in events:
        received = event.received_at
        # The events of one ingest request share received_at (equal values, parsed apart): its
        # epoch ms is worked out once per run of them.
        if received != stamp:
            stamp, moment = received, int(received.timestamp() * 1000)
        host = event.hostname.lower()
        if moment > latest.get(host, -1):
            latest[host] = moment
    if latest:
        client.zadd(LAST_SEEN_KEY, latest, gt=True)  # type: ignore[arg-type]
    return len(latest)


def prune_last_seen(client: redis.Redis, before_ms: int, max_hosts: int) -> tuple[int, int]:
    """Drop hosts last seen before ``before_ms``, then the longest silent past ``max_hosts``, at
    most 500,000 per call in slices of 10,000; returns how many of each (aged, overflow)."""
    script = PRUNE_LUA.register(client)
    aged = overflow = 0
    for _ in range(_PRUNE_SLICES_PER_RUN):
        got = script(keys=[LAST_SEEN_KEY], args=[before_ms, max_hosts, _PRUNE_SLICE])
        aged, overflow = aged + int(got[0]), overflow + int(got[1])
        if int(got[0]) + int(got[1]) < _PRUNE_SLICE:
            break
    metrics.LAST_SEEN_PRUNED.labels("aged").inc(aged)
    metrics.LAST_SEEN_PRUNED.labels("overflow").inc(overflow)
    if aged:
        log.info("last seen: dropped %d hosts silent since before %s", aged, iso(before_ms))
    if overflow:
        log.warning(
            "last seen: over HEARTBEAT_LAST_SEEN_MAX_HOSTS (%d): dropped the %d longest silent",
            max_hosts,
            overflow,
        )
    return aged, overflow


def last_seen(client: redis.Redis, hosts: Sequence[str]) -> dict[str, int | None]:
    """Each host's last event (epoch ms), None if never heard from."""
    found: dict[str, int | None] = {}
    for start in range(0, len(hosts), _ZMSCORE_CHUNK):
        chunk = list(hosts[start : start + _ZMSCORE_CHUNK])
        for host, score in zip(chunk, client.zmscore(LAST_SEEN_KEY, chunk), strict=True):
            found[host] = None if score is None else int(score)
    return found
