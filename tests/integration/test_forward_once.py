"""An alert is posted to Moog once: copies racing each other, and Redis restarting mid-POST.

On a real Redis and a real HTTP sink. Copies are ordinary: a message restored after a broker
restart next to its running original, an outbox entry republished by reconcile_ledger while the
original waits in the queue.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mutt_app.config import load_settings
from mutt_app.devtools.moog_sink import SinkState, create_sink_app, make_sink_server
from mutt_app.runtime import Runtime
from mutt_app.tasks.forward import SENT_PREFIX, deliver
from tests.services import RedisServer, wait_for

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
        while (status := deliver(runtime, [alert], 0).status_of(alert)) == "deferred":
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


def test_racing_copies_of_overlapping_batches_post_each_alert_once(
    pg_url: str, redis_url: str, tmp_path, sink_url: tuple[str, SinkState]
) -> None:  # type: ignore[no-untyped-def]
    # A redelivered batch racing its original, and a reconciled batch that overlaps both (the
    # outbox batches again what it finds overdue): each alert still reaches Moog once.
    url, state = sink_url
    env = {"DATABASE_URL": pg_url, "REDIS_URL": redis_url, "MUTT_DATA_DIR": str(tmp_path)}
    runtime = Runtime(load_settings({**env, "MOOG_WEBHOOK_URL": url, "MOOG_RATE_LIMIT": "100000"}))
    rounds = 15
    for i in range(rounds):
        alerts = [
            {"external_id": str(uuid.uuid4()), "signature": f"batch::{i}::{j}", "severity": 3}
            for j in range(6)
        ]
        copies = [alerts, alerts, alerts[3:], alerts[:4], list(reversed(alerts))]
        start = threading.Barrier(len(copies))

        def deliver_until_settled(batch: list[dict], start: threading.Barrier = start) -> None:
            start.wait()
            while batch:
                batch = deliver(runtime, batch, 0).deferred  # a copy in flight: ask again

        threads = [threading.Thread(target=deliver_until_settled, args=(c,)) for c in copies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

    posted = [event["external_id"] for event in state.events()[1]]
    assert len(posted) == len(set(posted)) == rounds * 6


def test_a_redis_restart_during_the_post_still_records_the_alert_as_sent(
    pg_url: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    # Moog accepts the alert while Redis restarts: the sent key must still be written (the worker's
    # client rides out the restart), or the alert's redelivered message would post it again.
    broker = RedisServer(appendonly=True).start()
    posts: list[bytes] = []

    class RestartingMoog(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posts.append(self.rfile.read(int(self.headers["Content-Length"])))
            # Down when the answer reaches the worker, back half a second later.
            broker.kill()
            threading.Timer(0.5, broker.start).start()
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), RestartingMoog)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/webhook"
        env = {"DATABASE_URL": pg_url, "REDIS_URL": broker.url, "MUTT_DATA_DIR": str(tmp_path)}
        runtime = Runtime(load_settings({**env, "MOOG_WEBHOOK_URL": url}))
        alert = {"external_id": str(uuid.uuid4()), "signature": "restart::1", "severity": 3}

        assert deliver(runtime, [alert], 0).status_of(alert) == "delivered"
        wait_for(broker.client().ping, 10, "Redis back")
        assert broker.client().exists(f"{SENT_PREFIX}:{alert['external_id']}")
        assert deliver(runtime, [alert], 0).status_of(alert) == "duplicate"  # the redelivered copy
        assert len(posts) == 1
    finally:
        server.shutdown()
        server.server_close()
        broker.stop()
