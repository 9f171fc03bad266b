"""The ingest app on a real Redis: event times outside the configured range are counted, logged and
queued under their ``received_at``; repeated keys and long integers are per-item rejections."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from flask import Flask
from prometheus_client import REGISTRY

from mutt_app.config import Settings
from mutt_app.tasks.classify import QUEUE
from mutt_app.web import create_ingest_app
from tests import broker_messages
from tests.conftest import close_web_app
from tests.factories import posted_event


@pytest.fixture
def ingest_app(settings: Settings) -> Iterator[Flask]:
    update = {"event_time_max_age_days": 2, "event_time_max_ahead_minutes": 5}
    app = create_ingest_app(settings.model_copy(update=update))
    try:
        yield app
    finally:
        close_web_app(app)


def _queued(client: redis.Redis) -> list[dict]:
    return [e for raw in client.lrange(QUEUE, 0, -1) for e in broker_messages.task_args(raw)[0]]


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_event_times_outside_the_configured_range_are_queued_at_received_at_counted_and_logged(
    ingest_app: Flask, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.now(UTC)
    stamps = {
        "kept old": now - timedelta(days=1),
        "too old": now - timedelta(days=3),
        "kept ahead": now + timedelta(minutes=4),
        "too far ahead": now + timedelta(minutes=10),
    }
    body = [posted_event(m, timestamp=t.isoformat()) for m, t in stamps.items()]
    body.append(posted_event("year 9999", timestamp="9999-12-31T23:59:59Z"))
    past = _sample("mutt_ingest_event_time_adjusted_total", direction="past")
    future = _sample("mutt_ingest_event_time_adjusted_total", direction="future")

    with caplog.at_level(logging.INFO, logger="mutt_app.events.event_time"):
        response = ingest_app.test_client().post("/api/v2/ingest", json=body)

    assert response.status_code == 200, response.json
    assert response.json["accepted"] == 5
    queued = {e["message"]: e for e in _queued(redis_client)}
    for message in ("kept old", "kept ahead"):
        assert datetime.fromisoformat(queued[message]["timestamp"]) == stamps[message]
    for message in ("too old", "too far ahead", "year 9999"):
        event = queued[message]
        assert event["timestamp"] == event["received_at"]
        assert event["raw"]["timestamp"] != event["timestamp"]  # the sender's time, kept
    assert _sample("mutt_ingest_event_time_adjusted_total", direction="past") == past + 1
    assert _sample("mutt_ingest_event_time_adjusted_total", direction="future") == future + 2
    assert "3 events stamped outside [-2d, +5m] of received_at are audited under received_at; " in (
        caplog.text
    )
    assert "first: item 1 (past) stamped" in caplog.text
