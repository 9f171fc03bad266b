"""Copies of one alert racing each other post it once (a real Redis and a real HTTP sink).

Copies are ordinary: a message restored after a broker restart next to its running original, an
outbox entry republished by reconcile_ledger while the original waits in the queue.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from mutt_app.config import load_settings
from mutt_app.moog_sink import SinkState, create_sink_app, make_sink_server
from mutt_app.runtime import Runtime
from mutt_app.tasks.forward import deliver

COPIES = 8
ALERTS = 60


@pytest.fixture
def sink_url() -> Iterator[tuple[str, SinkState]]:
    state = SinkState()
    server = make_sink_server("127.0.0.1", 0, create_sink_app(state, echo=lambda _line: None))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/webhook", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_racing_copies_of_an_alert_post_it_once(
    pg_url: str, redis_url: str, tmp_path, sink_url: tuple[str, SinkState]
) -> None:  # type: ignore[no-untyped-def]
    url, state = sink_url
    env = {"DATABASE_URL": pg_url, "REDIS_URL": redis_url, "MUTT_DATA_DIR": str(tmp_path)}
    runtime = Runtime(load_settings({**env, "MOOG_WEBHOOK_URL": url, "MOOG_RATE_LIMIT": "100000"}))
    outcomes: list[str] = []
    lock = threading.Lock()

    def deliver_until_settled(alert: dict, start: threading.Barrier) -> None:
        start.wait()
        # A deferred copy comes straight back (no countdown) to keep the race as tight as it gets.
        while (status := deliver(runtime, alert, 0).status) == "deferred":
            pass
        with lock:
            outcomes.append(status)

    for i in range(ALERTS):
        alert = {"external_id": str(uuid.uuid4()), "signature": f"copies::{i}", "severity": 3}
        start = threading.Barrier(COPIES)
        threads = [
            threading.Thread(target=deliver_until_settled, args=(alert, start))
            for _ in range(COPIES)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

    posted = [event["external_id"] for event in state.events()[1]]
    assert len(posted) == len(set(posted)) == ALERTS
    assert outcomes.count("delivered") == ALERTS
    assert outcomes.count("duplicate") == ALERTS * (COPIES - 1)
