"""Reliable forwarding on real processes: a real Redis, real workers, a real HTTP sink.

The sink (``mutt moog-sink``) can be told to answer 500, 429 or 400, or to hang, for a while.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import redis
import requests
from click.testing import CliRunner

from mutt_app import slo
from mutt_app.celery_app import make_celery, runtime_of
from mutt_app.cli import main
from mutt_app.config import load_settings
from mutt_app.ledger import OUTBOX, Ledger
from mutt_app.tasks.classify import publish_forwards
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import FORWARD_QUEUES, Stack
from tests.services import RedisServer, wait_for

FAST = {
    # Short delays so outages, retries and replays play out within a test.
    "MOOG_RETRY_BASE_DELAY": "0.2",
    "MOOG_RETRY_MAX_DELAY": "1",
    "MOOG_CIRCUIT_BREAKER_THRESHOLD": "5",
    "MOOG_CIRCUIT_BREAKER_TIMEOUT": "3",
    "MOOG_WEBHOOK_TIMEOUT": "2",
    "REMEDIATION_INTERVAL_SECONDS": "1",
    "REMEDIATION_BACKOFF_BASE": "1",
    "BROKER_VISIBILITY_TIMEOUT": "20",
    "BROKER_RESTORE_INTERVAL": "2",
}


def _alerts(n: int) -> list[dict]:
    now = int(datetime.now(UTC).timestamp())
    return [
        {
            "signature": f"host-{i % 20}::1::test",
            "source_id": f"host-{i % 20}",
            "source": f"host-{i % 20}",
            "external_id": str(uuid.uuid4()),
            "manager": "MUTT",
            "class": "NETO",
            "agent": "MUTT",
            "agent_location": f"host-{i % 20}",
            "type": "syslog",
            "severity": 4,
            "description": f"alert {i}",
            "agent_time": now,
        }
        for i in range(n)
    ]


def _publish(stack: Stack, alerts: list[dict]) -> None:
    # As classify_event does: recorded in the outbox, then published.
    app = make_celery(load_settings(stack.env))
    publish_forwards(runtime_of(app), app, alerts)


def _control(stack: Stack, **mode: object) -> None:
    url = f"http://127.0.0.1:{stack.sink_port}/_control"
    requests.post(url, json=mode, timeout=5).raise_for_status()


def _stats(stack: Stack) -> dict:
    return requests.get(f"http://127.0.0.1:{stack.sink_port}/_stats", timeout=5).json()


def _total(samples: dict[str, float], name: str) -> float:
    """The sum of a metric's samples over all label sets."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _forward_workers(stack: Stack, count: int) -> None:
    # As `mutt run` does: forward on its own queue, in threaded workers.
    for i in range(count):
        stack.start_worker(f"forward{i}", queues=FORWARD_QUEUES, concurrency=4, pool="threads")


def _start_remediation(stack: Stack) -> None:
    stack.start_worker("maintenance", queues="mutt.maintenance", concurrency=1)
    stack.start_beat()


@pytest.mark.slow
def test_cluster_wide_rate_limit_holds_across_three_workers(make_stack: StackFactory) -> None:
    stack = make_stack(**FAST, MOOG_RATE_LIMIT="50", MOOG_RATE_PERIOD="1")
    stack.start_sink()
    _forward_workers(stack, 3)
    alerts = _alerts(600)
    _publish(stack, alerts)

    received = stack.wait_sink(600, timeout=90)
    assert sorted(a["external_id"] for a in received) == sorted(a["external_id"] for a in alerts)
    arrivals = requests.get(f"http://127.0.0.1:{stack.sink_port}/_arrivals", timeout=5).json()
    assert _max_in_window(arrivals["arrivals"], 1.0) <= 50
    assert _total(stack.worker_metrics(), "mutt_moog_rate_limit_hits_total") > 0


@pytest.mark.slow
def test_outage_opens_the_circuit_and_every_alert_arrives_once(make_stack: StackFactory) -> None:
    stack = make_stack(**FAST, MOOG_MAX_RETRIES="3", MOOG_RATE_LIMIT="200")
    stack.start_sink()
    _forward_workers(stack, 1)
    _start_remediation(stack)
    _control(stack, status=500, for_seconds=20)
    alerts = _alerts(200)
    _publish(stack, alerts)

    received = stack.wait_sink(200, timeout=120)
    stack.settle(3)
    received = stack.sink_events()
    ids = [a["external_id"] for a in received]
    assert sorted(ids) == sorted(a["external_id"] for a in alerts)  # all arrived, none twice
    # While open, nothing reaches the sink: only the failures that opened it, and one probe per
    # open period (3 s in a 20 s outage), plus what was already in flight when it opened.
    refused = _stats(stack)["rejected"].get("500", 0)
    assert 5 <= refused <= 5 + 20 // 3 + 1 + 4
    samples = stack.worker_metrics()
    assert _total(samples, "mutt_moog_retries_total") >= 5
    assert samples["mutt_moog_circuit_state"] == 0  # CLOSED again
    # The SLO counters in Redis (the report's fallback source) saw the same requests as Prometheus.
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    good, total = slo.counted(client, "forward", 2)  # 2 hours, in case the test straddles one
    requests_total = {k: v for k, v in samples.items() if k.startswith("mutt_moog_requests_total{")}
    assert total == sum(requests_total.values()) and total - 200 == refused
    assert good == sum(v for k, v in requests_total.items() if 'status="success"' in k) == 200


@pytest.mark.slow
def test_rejected_alerts_go_to_dlq_then_poison_and_the_cli_lists_them(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(**FAST, REMEDIATION_MAX_RETRIES="2")
    stack.start_sink()
    _forward_workers(stack, 1)
    _control(stack, status=400)
    alerts = _alerts(3)
    _publish(stack, alerts)

    runner = CliRunner()

    def listed(*args: str) -> str:
        result = runner.invoke(main, ["dlq", "list", *args], env=stack.env, catch_exceptions=False)
        return result.output

    wait_for(lambda: "3 dead letters" in listed(), 30, "3 dead letters")
    assert "HTTP400" in listed("--task", "forward_to_moog")

    _start_remediation(
        stack
    )  # remediation replays them (Moog answers < 500: healthy), twice, then poison
    wait_for(lambda: "3 poison" in listed("--poison"), 60, "3 poison items")
    assert "0 dead letters" in listed()
    assert stack.sink_events() == []
    samples = stack.worker_metrics()
    assert _total(samples, "mutt_poison_depth") == 3
    assert _total(samples, "mutt_dead_letters_total") >= 3


@pytest.mark.slow
def test_worker_kill_and_redis_restart_lose_no_alert(make_stack: StackFactory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    broker = RedisServer(appendonly=True).start()
    try:
        stack = make_stack(**FAST, REDIS_URL=broker.url, MOOG_RATE_LIMIT="100")
        stack.start_sink()
        _start_remediation(stack)  # beat's reconcile_ledger republishes what the broker lost
        worker = stack.start_worker("forward", queues=FORWARD_QUEUES, concurrency=4, pool="threads")
        alerts = _alerts(1000)
        _publish(stack, alerts)

        def arrived() -> int:
            # Distinct alerts: a duplicate must not stand in for one that has not arrived yet.
            return len({a["external_id"] for a in stack.sink_events()})

        wait_for(lambda: arrived() >= 200, 60, "first 200 alerts")
        worker.kill()
        broker.restart()  # AOF brings the queue and the unacked set back
        workers = [
            stack.start_worker("forward2", queues=FORWARD_QUEUES, concurrency=4, pool="threads")
        ]
        wait_for(lambda: arrived() >= 500, 60, "500 alerts after the restart")
        broker.restart()

        def supervised_progress() -> bool:
            # A threaded worker can exit on a broker restart (kombu raises AttributeError from an
            # ack racing the reconnect: "Unrecoverable error"). `mutt run` and systemd restart a
            # part that exits; do the same here, and see that nothing is lost either way. That
            # includes beat and the maintenance worker: reconcile_ledger is what brings back an
            # alert whose message the restarts lost.
            if not workers[-1].alive:
                name = f"forward{len(workers) + 2}"
                workers.append(
                    stack.start_worker(name, queues=FORWARD_QUEUES, concurrency=4, pool="threads")
                )
            for part in ("maintenance", "beat"):
                if not stack.processes[part].alive:
                    stack.processes[part].start()
            return arrived() >= 1000

        wait_for(supervised_progress, 180, "1000 distinct alerts at the sink", interval=1)
        stack.settle(5)
        received = stack.sink_events()
        ids = [a["external_id"] for a in received]
        assert set(ids) == {a["external_id"] for a in alerts}  # at least once, every one
        duplicates = len(ids) - len(set(ids))
        assert duplicates <= 1  # under 0.1 percent of 1000
        outbox = Ledger(redis.Redis.from_url(broker.url), OUTBOX)
        wait_for(lambda: outbox.depth() == 0, 30, "every outbox entry settled")
    finally:
        broker.stop()
