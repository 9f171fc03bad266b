"""``mutt send`` against a fake ingest endpoint that answers as the real one does."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

from mutt_app.cli import Context
from mutt_app.config import load_settings
from mutt_app.devtools.send import SendReport, parse_events, sample_events, send
from tests.services import free_port

REQUIRED = ("timestamp", "message", "hostname")


class FakeIngest:
    """POST /api/v2/ingest with the real endpoint's answers: 200, 422, 401, 503 + Retry-After."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.requests = 0
        self.unavailable = 0  # answer this many requests 503 first
        self.api_key: str | None = None
        self.lock = threading.Lock()
        self.app = Flask("fake_ingest")
        self.app.add_url_rule("/api/v2/ingest", view_func=self.ingest, methods=["POST"])

    def ingest(self) -> Response | tuple[Response, int] | tuple[Response, int, dict]:
        with self.lock:
            self.requests += 1
            if self.api_key and request.headers.get("X-API-Key") != self.api_key:
                return jsonify(error="invalid or missing X-API-Key"), 401
            if self.unavailable:
                self.unavailable -= 1
                return (
                    jsonify(error="classify queue is full, retry later"),
                    503,
                    {"Retry-After": "0"},
                )
            items = orjson.loads(request.get_data())
            self.batches.append(items)
        accepted, rejected = [], []
        for index, item in enumerate(items):
            missing = [f for f in REQUIRED if not isinstance(item, dict) or f not in item]
            if missing:
                rejected.append({"index": index, "error": f"missing field {missing[0]!r}"})
            else:
                accepted.append(f"cid-{index}")
        body = {"accepted": len(accepted), "correlation_ids": accepted, "rejected": rejected}
        if not accepted:
            return jsonify(status="rejected", **body), 422
        return jsonify(status="accepted", **body), 200

    @property
    def events(self) -> list[Any]:
        return [event for batch in self.batches for event in batch]


@pytest.fixture
def ingest() -> Iterator[tuple[FakeIngest, str]]:
    fake = FakeIngest()
    server = make_server("127.0.0.1", 0, fake.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_port}/api/v2/ingest"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _send(*args: str, input: bytes | str | None = None, **env: str) -> Result:
    context = Context(load_settings(env))
    return CliRunner().invoke(send, list(args), obj=context, input=input)


def _event(i: int, **overrides: Any) -> dict[str, Any]:
    event = {"timestamp": "2026-11-22T10:00:00Z", "hostname": f"h{i}", "message": f"m{i}"}
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


def _ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(e) for e in events) + b"\n"


def test_samples_exercise_the_seed_rules_with_current_timestamps(
    ingest: tuple[FakeIngest, str],
) -> None:
    fake, url = ingest
    result = _send("--url", url)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "sent 8, accepted 8, rejected 0, failed requests 0"
    assert len(fake.batches) == 1
    events = fake.events
    assert len(events) == 8
    messages = [e["message"] for e in events]
    assert any("CRITICAL" in m for m in messages)
    assert any(re.search("Interface.*down", m) for m in messages)
    assert any(re.search("disk.*full", m) for m in messages)
    assert any(e.get("syslog_severity") == 6 for e in events)
    traps = [e for e in events if "trap_oid" in e]
    assert traps and all("syslog_severity" not in e for e in traps)
    assert "router-01" in {e["hostname"] for e in events}
    now = datetime.now(UTC)
    for event in events:
        stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        assert now - stamp < timedelta(minutes=1)


def test_sample_events_are_stamped_with_the_given_time() -> None:
    moment = datetime(2026, 11, 22, 10, 0, 0, 123000, tzinfo=UTC)
    assert {e["timestamp"] for e in sample_events(moment)} == {"2026-11-22T10:00:00.123Z"}


def test_a_ndjson_file_is_sent_in_batches(ingest: tuple[FakeIngest, str], tmp_path: Path) -> None:
    fake, url = ingest
    path = tmp_path / "events.ndjson"
    path.write_bytes(_ndjson([_event(i) for i in range(5)]).replace(b"\n", b"\n\n", 1))
    result = _send(str(path), "--url", url, "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert "sent 5, accepted 5, rejected 0, failed requests 0" in result.output
    assert [len(b) for b in fake.batches] == [2, 2, 1]
    assert [e["hostname"] for e in fake.events] == ["h0", "h1", "h2", "h3", "h4"]


def test_a_json_array_from_stdin(ingest: tuple[FakeIngest, str]) -> None:
    fake, url = ingest
    body = orjson.dumps([_event(1), _event(2)])
    result = _send("-", "--url", url, input=body)
    assert result.exit_code == 0, result.output
    assert "sent 2, accepted 2" in result.output
    assert fake.events == [_event(1), _event(2)]


def test_rejections_are_reported_with_their_event_number_and_fail_the_exit_status(
    ingest: tuple[FakeIngest, str],
) -> None:
    _, url = ingest
    events = [_event(0), _event(1, hostname=None), _event(2), _event(3, message=None)]
    result = _send("-", "--url", url, "--batch-size", "3", input=_ndjson(events))
    assert result.exit_code == 1
    assert (
        "sent 4, accepted 2, rejected 2 (#1: missing field 'hostname'; "
        "#3: missing field 'message'), failed requests 0"
    ) in result.output


def test_a_body_with_nothing_valid_counts_as_rejected(ingest: tuple[FakeIngest, str]) -> None:
    _, url = ingest
    result = _send("-", "--url", url, input=_ndjson([{"message": "x"}, {"message": "y"}]))
    assert result.exit_code == 1
    assert "sent 2, accepted 0, rejected 2" in result.output


def test_503_is_retried_after_retry_after(ingest: tuple[FakeIngest, str]) -> None:
    fake, url = ingest
    fake.unavailable = 2
    result = _send("--url", url)
    assert result.exit_code == 0, result.output
    assert "sent 8, accepted 8, rejected 0, failed requests 0" in result.output
    assert fake.requests == 3


def test_503_beyond_the_retries_is_a_failed_request(ingest: tuple[FakeIngest, str]) -> None:
    fake, url = ingest
    fake.unavailable = 10
    result = _send("--url", url, "--retries", "1")
    assert result.exit_code == 1
    assert "sent 8, accepted 0, rejected 0, failed requests 1" in result.output
    assert "HTTP 503 (after 1 retries): classify queue is full" in result.output
    assert fake.requests == 2


def test_the_api_key_comes_from_the_settings_or_the_option(ingest: tuple[FakeIngest, str]) -> None:
    fake, url = ingest
    fake.api_key = "k1"
    assert _send("--url", url, INGEST_API_KEY="k1").exit_code == 0
    refused = _send("--url", url, "--api-key", "wrong", INGEST_API_KEY="k1")
    assert refused.exit_code == 1
    assert "HTTP 401: invalid or missing X-API-Key" in refused.output
    assert "failed requests 1" in refused.output


def test_count_and_rate_repeat_the_samples_at_about_that_rate(
    ingest: tuple[FakeIngest, str],
) -> None:
    fake, url = ingest
    started = time.monotonic()
    result = _send("--url", url, "--count", "3", "--rate", "20", "--batch-size", "5")
    took = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert "sent 24, accepted 24" in result.output
    assert [len(b) for b in fake.batches] == [5, 5, 5, 5, 4]
    assert 0.9 <= took < 3  # the fifth batch is due 20 events / 20 per s after the first


def test_an_unreachable_endpoint_is_a_failed_request() -> None:
    result = _send("--url", f"http://127.0.0.1:{free_port()}/api/v2/ingest")
    assert result.exit_code == 1
    assert "ConnectionError" in result.output
    assert "sent 8, accepted 0, rejected 0, failed requests 1" in result.output


def test_a_line_that_is_not_json_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.ndjson"
    path.write_bytes(b'{"message": "ok"}\n{oops\n')
    result = _send(str(path))
    assert result.exit_code == 1
    assert "line 2 is not JSON" in result.output


def test_parse_events_accepts_an_array_an_object_or_ndjson() -> None:
    assert parse_events(b'[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]
    assert parse_events(b'{\n  "a": 1\n}\n') == [{"a": 1}]
    assert parse_events(b'{"a": 1}\n\n{"a": 2}\n') == [{"a": 1}, {"a": 2}]
    assert parse_events(b"") == []


def test_the_summary_shows_the_first_reasons() -> None:
    report = SendReport(sent=10, accepted=5, rejected=5)
    report.reasons = [f"#{i}: bad" for i in range(5)]
    assert report.summary() == (
        "sent 10, accepted 5, rejected 5 (#0: bad; #1: bad; #2: bad; ... 2 more), failed requests 0"
    )
    assert not report.ok
