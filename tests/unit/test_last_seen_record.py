"""record_seen works out each run of equal received_at once: the same mapping as converting every
event's time on its own."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

from mutt_app.watch.last_seen import LAST_SEEN_KEY, record_seen


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, int], bool]] = []

    def zadd(self, key: str, mapping: dict[str, int], gt: bool = False) -> None:
        self.calls.append((key, dict(mapping), gt))


def _reference(events: list[Any]) -> dict[str, int]:
    latest: dict[str, int] = {}
    for event in events:
        host = event.hostname.lower()
        moment = int(event.received_at.timestamp() * 1000)
        if moment > latest.get(host, -1):
            latest[host] = moment
    return latest


def test_record_seen_matches_the_per_event_conversion() -> None:
    rng = random.Random(7)
    base = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    events = []
    for i in range(2000):
        # Runs of equal instants, as parsed apart (distinct objects), some in another zone, and
        # earlier times after later ones.
        moment = base + timedelta(milliseconds=rng.choice([0, 0, 0, 1, 999, 1000, -5000]) + i // 50)
        if rng.random() < 0.2:
            moment = moment.astimezone(plus_two)
        host = rng.choice(["Core-SW-01", "core-sw-01", "edge-02", "EDGE-02", "db-7"])
        events.append(SimpleNamespace(hostname=host, received_at=moment))
    client = _Recorder()
    assert record_seen(client, events) == len(_reference(events))
    assert client.calls == [(LAST_SEEN_KEY, _reference(events), True)]


def test_no_events_no_write() -> None:
    client = _Recorder()
    assert record_seen(client, []) == 0
    assert client.calls == []
