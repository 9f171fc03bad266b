"""The local Moog sink on a real socket: records alerts, and misbehaves when told to."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from mutt_app.devtools.moog_sink import (
    SinkState,
    create_sink_app,
    make_sink_server,
    max_in_window,
    parse_mode,
)
from tests.services import free_port, wait_for


@dataclass
class Sink:
    url: str
    state: SinkState
    lines: list[str]

    def post(self, alert: object, path: str = "/webhook", timeout: float = 5) -> requests.Response:
        return requests.post(self.url + path, json=alert, timeout=timeout)

    def get(self, path: str) -> dict:
        response = requests.get(self.url + path, timeout=5)
        response.raise_for_status()
        return response.json()

    def control(self, **mode: object) -> requests.Response:
        return requests.post(self.url + "/_control", json=mode, timeout=5)


@pytest.fixture
def sink() -> Iterator[Sink]:
    state = SinkState()
    lines: list[str] = []
    server = make_sink_server("127.0.0.1", 0, create_sink_app(state, echo=lines.append))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Sink(f"http://127.0.0.1:{server.server_port}", state, lines)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _alert(i: int, **extra: object) -> dict:
    return {
        "external_id": f"id-{i}",
        "source": f"host-{i}",
        "severity": 4,
        "description": f"alert {i}",
        **extra,
    }


def test_alerts_are_recorded_printed_and_read_incrementally(sink: Sink) -> None:
    for i in range(3):
        response = sink.post(_alert(i))
        assert response.status_code == 200
        assert response.json() == {"success": True}
    assert sink.post(_alert(3), path="/").status_code == 200  # the alias

    everything = sink.get("/events")
    assert everything["count"] == 4
    assert [e["external_id"] for e in everything["events"]] == ["id-0", "id-1", "id-2", "id-3"]
    assert [e["_index"] for e in everything["events"]] == [0, 1, 2, 3]
    assert all(abs(e["_received_at"] - time.time()) < 60 for e in everything["events"])
    later = sink.get("/events?since=3")
    assert later["count"] == 4 and [e["external_id"] for e in later["events"]] == ["id-3"]
    assert sink.get("/events?since=4")["events"] == []

    assert sink.lines[0] == "alert id-0 host-0 sev=4 alert 0"
    assert sink.get("/_stats")["received"] == 4
    assert sink.get("/health")["status"] == "healthy"


def test_long_descriptions_are_cut_in_the_printed_line(sink: Sink) -> None:
    sink.post(_alert(1, description="x" * 200))
    assert sink.lines == ["alert id-1 host-1 sev=4 " + "x" * 80]


def test_a_body_that_is_not_a_json_object_is_refused(sink: Sink) -> None:
    response = requests.post(sink.url + "/webhook", data=b"not json", timeout=5)
    assert response.status_code == 400
    assert sink.post([1, 2]).status_code == 400  # an array, but not of events
    assert sink.post({"events": []}).status_code == 400
    assert sink.get("/events")["count"] == 0
    assert sink.get("/_stats")["rejected"] == {"400": 3}


def test_a_batch_in_either_format_is_recorded_event_by_event(sink: Sink) -> None:
    assert sink.post({"events": [_alert(1), _alert(2)]}).json() == {"success": True}
    cloud = [{"description": "c1", "tags": {"external_id": "c-1"}}, {"description": "c2"}]
    assert sink.post(cloud, path="/v1/integrations/events").status_code == 200
    body = sink.get("/events")
    assert body["count"] == 4
    assert [e.get("external_id") for e in body["events"][:2]] == ["id-1", "id-2"]
    assert body["events"][2]["tags"] == {"external_id": "c-1"}
    assert sink.get("/_stats")["requests"] == 2
    assert sink.lines[2].startswith("alert c-1 ")


def test_a_marked_event_gets_its_whole_request_refused(sink: Sink) -> None:
    assert sink.control(reject_marker="POISON").json()["reject_marker"] == "POISON"
    refused = sink.post({"events": [_alert(1), _alert(2, description="a POISON pill")]})
    assert refused.status_code == 400
    assert "1 of 2 events refused" in refused.json()["error"]
    assert sink.post({"events": [_alert(3)]}).status_code == 200
    assert [e["external_id"] for e in sink.get("/events")["events"]] == ["id-3"]
    assert sink.get("/_stats")["rejected"] == {"400": 1}
    assert sink.control(reject_marker="").status_code == 400


def test_an_outage_for_some_seconds_then_recovery(sink: Sink) -> None:
    assert sink.control(status=500, for_seconds=0.8).status_code == 200
    assert 0 < sink.get("/_control")["remaining_seconds"] <= 0.8
    refused = [sink.post(_alert(i)) for i in range(3)]
    assert [r.status_code for r in refused] == [500, 500, 500]
    assert refused[0].json()["success"] is False
    assert "Retry-After" not in refused[0].headers

    wait_for(lambda: sink.post(_alert(9)).status_code == 200, 3, "the outage to end")
    assert sink.get("/_control") == {
        "status": 200,
        "retry_after": None,
        "delay": 0.0,
        "remaining_seconds": None,
        "reject_marker": None,
    }
    events = sink.get("/events")["events"]
    assert [e["external_id"] for e in events] == ["id-9"]  # refused alerts are not recorded
    stats = sink.get("/_stats")
    assert stats["received"] == 1
    assert stats["rejected"]["500"] >= 3


def test_429_carries_retry_after(sink: Sink) -> None:
    sink.control(status=429, retry_after=2)
    response = sink.post(_alert(1))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    sink.control(status=503, retry_after=0.5)
    assert sink.post(_alert(2)).headers["Retry-After"] == "0.5"
    assert sink.get("/_stats")["rejected"] == {"429": 1, "503": 1}


def test_400_is_permanent_until_changed(sink: Sink) -> None:
    sink.control(status=400)
    assert [sink.post(_alert(i)).status_code for i in range(2)] == [400, 400]
    sink.control(status=200)
    assert sink.post(_alert(3)).status_code == 200


def test_a_delay_holds_one_request_without_blocking_others(sink: Sink) -> None:
    sink.control(delay=1.0)
    results: dict[str, object] = {}

    def slow() -> None:
        started = time.monotonic()
        results["status"] = sink.post(_alert(1)).status_code
        results["took"] = time.monotonic() - started

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert sink.get("/health")["status"] == "healthy"
    assert time.monotonic() - started < 0.5  # served while the alert waits
    with pytest.raises(requests.Timeout):
        sink.post(_alert(2), timeout=0.3)  # a client that gives up: Moog hanging
    thread.join(5)
    assert results["status"] == 200 and results["took"] >= 1.0  # type: ignore[operator]


def test_stats_and_arrivals_count_every_request(sink: Sink) -> None:
    sink.control(status=500, for_seconds=0.3)
    for i in range(5):
        sink.post(_alert(i))
    time.sleep(0.35)
    for i in range(5, 8):
        sink.post(_alert(i))
    arrivals = sink.get("/_arrivals")["arrivals"]
    assert len(arrivals) == 8
    assert arrivals == sorted(arrivals)
    stats = sink.get("/_stats")
    assert stats["requests"] == 8
    assert stats["received"] == 3
    assert stats["rejected"] == {"500": 5}
    assert stats["requests_per_second_max"] == max_in_window(arrivals) == 8


def test_reset_clears_mode_events_and_counters(sink: Sink) -> None:
    sink.post(_alert(1))
    sink.control(status=500)
    sink.post(_alert(2))
    assert sink.control(reset=True).json()["status"] == 200
    assert sink.get("/events") == {"count": 0, "events": []}
    assert sink.get("/_arrivals") == {"arrivals": []}
    assert sink.get("/_stats")["rejected"] == {}
    assert sink.post(_alert(3)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"status": 99},
        {"status": 500.5},
        {"status": "500"},
        {"delay": -1},
        {"for_seconds": 0},
        {"retry-after": 2},
    ],
)
def test_bad_control_bodies_are_refused(sink: Sink, body: dict) -> None:
    response = sink.control(**body)
    assert response.status_code == 400
    assert response.json()["error"]
    assert sink.get("/_control")["status"] == 200


def test_the_event_store_is_bounded() -> None:
    state = SinkState(max_events=3)
    for i in range(5):
        state.accept(_alert(i))
    count, events = state.events()
    assert count == 5
    assert [e["_index"] for e in events] == [2, 3, 4]
    assert [e["_index"] for e in state.events(since=4)[1]] == [4]
    assert [e["_index"] for e in state.events(since=1)[1]] == [2, 3, 4]


def test_a_mode_expires_on_its_clock() -> None:
    now = [100.0]
    state = SinkState(clock=lambda: now[0])
    state.set_mode(parse_mode({"status": 500, "for_seconds": 10}, now[0]))
    assert state.arrive().status == 500
    now[0] = 110.0
    assert state.arrive().status == 200


def test_max_in_window() -> None:
    assert max_in_window([]) == 0
    assert max_in_window([0.0, 0.5, 0.99, 1.0, 1.5, 1.6]) == 4  # [0.99, 1.99)
    assert max_in_window([3.0, 1.0, 2.0]) == 1


SINK_SCRIPT = """
import sys
from mutt_app.cli import Context
from mutt_app.config import load_settings
from mutt_app.devtools.moog_sink import moog_sink

moog_sink.main(sys.argv[1:], obj=Context(load_settings({})), prog_name="mutt moog-sink")
"""


def test_the_command_serves_prints_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    script = tmp_path / "sink.py"
    script.write_text(textwrap.dedent(SINK_SCRIPT))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(script), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(url + "/health", timeout=1).ok, 10, "the sink")
        assert requests.post(url + "/webhook", json=_alert(7), timeout=5).ok
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    assert process.returncode == 0
    assert f"moog sink listening on http://127.0.0.1:{port}/webhook" in output
    assert re.search(r"^alert id-7 host-7 sev=4 alert 7$", output, re.M)
    assert "POST /webhook" not in output  # no access log
