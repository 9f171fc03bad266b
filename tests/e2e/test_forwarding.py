"""Reliable forwarding on real processes: a real Redis, real workers, a real HTTP sink.

The sink (``mutt moog-sink``) can be told to answer 500, 429 or 400, or to hang, for a while, or to
refuse the requests carrying a marked event. Alerts travel in batches (MOOG_BATCH_SIZE per task and
per request); the sink records each event of a request, so the checks below are per alert.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import redis
import requests
from click.testing import CliRunner
from sqlalchemy import select

from mutt_app.cli import main
from mutt_app.db.models import DeadLetter
from mutt_app.ledger import OUTBOX, Ledger
from mutt_app.watch import slo
from tests.e2e.alerts import max_in_window, publish_alerts
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import FORWARD_QUEUES, WEB_API_KEY, Stack
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
    # What a kill or a Redis restart makes the broker lose outright (kombu #305, a reply in flight)
    # comes back through reconcile_ledger after this long (shipped: 600 s), within the test.
    "LEDGER_RECONCILE_AFTER": "20",
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


def _control(stack: Stack, **mode: object) -> None:
    url = f"http://127.0.0.1:{stack.sink_port}/_control"
    requests.post(url, json=mode, timeout=5).raise_for_status()


def _stats(stack: Stack) -> dict:
    return requests.get(f"http://127.0.0.1:{stack.sink_port}/_stats", timeout=5).json()


def _total(samples: dict[str, float], name: str) -> float:
    """The sum of a metric's samples over all label sets."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def _forward_workers(stack: Stack, count: int) -> None:
    # As `mutt run` does: forward on its own queue, in threaded workers.
    for i in range(count):
        stack.start_worker(f"forward{i}", queues=FORWARD_QUEUES, concurrency=4, pool="threads")


def _start_remediation(stack: Stack) -> None:
    with stack.together():
        stack.start_worker("maintenance", queues="mutt.maintenance", concurrency=1)
        stack.start_beat()


@pytest.mark.slow
def test_cluster_wide_rate_limit_holds_across_three_workers(make_stack: StackFactory) -> None:
    # The limit counts requests (a batch is one): 120 batches of 5 at 20 requests a second.
    stack = make_stack(**FAST, MOOG_RATE_LIMIT="20", MOOG_RATE_PERIOD="1", MOOG_BATCH_SIZE="5")
    with stack.together():
        stack.start_sink()
        _forward_workers(stack, 3)
    alerts = _alerts(600)
    publish_alerts(stack, alerts)

    received = stack.wait_sink(600, timeout=90)
    assert sorted(a["external_id"] for a in received) == sorted(a["external_id"] for a in alerts)
    arrivals = requests.get(f"http://127.0.0.1:{stack.sink_port}/_arrivals", timeout=5).json()
    assert len(arrivals["arrivals"]) == 120  # one request per batch
    assert max_in_window(arrivals["arrivals"], 1.0) <= 20
    assert _total(stack.worker_metrics(), "mutt_moog_rate_limit_hits_total") > 0


# Three open periods of the breaker (MOOG_CIRCUIT_BREAKER_TIMEOUT 3 s), each ending in a refused probe.
OUTAGE_SECONDS = 10


@pytest.mark.slow
def test_outage_opens_the_circuit_and_every_alert_arrives_once(make_stack: StackFactory) -> None:
    stack = make_stack(**FAST, MOOG_MAX_RETRIES="3", MOOG_RATE_LIMIT="200", MOOG_BATCH_SIZE="10")
    with stack.together():
        stack.start_sink()
        _forward_workers(stack, 1)
        _start_remediation(stack)
    _control(stack, status=500, for_seconds=OUTAGE_SECONDS)
    alerts = _alerts(200)
    publish_alerts(stack, alerts)

    received = stack.wait_sink(200, timeout=120)
    stack.settle(3)
    received = stack.sink_events()
    ids = [a["external_id"] for a in received]
    assert sorted(ids) == sorted(a["external_id"] for a in alerts)  # all arrived, none twice
    # While open, nothing reaches the sink: only the failures that opened it, and one probe per
    # open period (3 s in the outage), plus what was already in flight when it opened.
    refused = _stats(stack)["rejected"].get("500", 0)
    assert 5 <= refused <= 5 + OUTAGE_SECONDS // 3 + 1 + 4
    samples = stack.worker_metrics()
    assert _total(samples, "mutt_moog_retries_total") >= 5
    assert samples["mutt_moog_circuit_state"] == 0  # CLOSED again
    # The SLO counters in Redis (the report's fallback source) saw the same requests as Prometheus.
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    good, total = slo.counted(client, "forward", 2)  # 2 hours, in case the test straddles one
    requests_total = {k: v for k, v in samples.items() if k.startswith("mutt_moog_requests_total{")}
    assert total == sum(requests_total.values()) and total - good == refused
    assert good == sum(v for k, v in requests_total.items() if 'status="success"' in k)
    assert good == _stats(stack)["requests"] - refused  # a request is a batch: fewer than 200
    assert samples['mutt_moog_alerts_processed_total{status="success"}'] == 200


@pytest.mark.slow
def test_rejected_alerts_go_to_dlq_then_poison_and_the_cli_lists_them(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(**FAST, REMEDIATION_MAX_RETRIES="2")
    with stack.together():
        stack.start_sink()
        _forward_workers(stack, 1)
    _control(stack, status=400)
    alerts = _alerts(3)
    publish_alerts(stack, alerts)

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


# Moog taking a batch and the worker recording it as sent cannot be one step: a worker killed
# between the two has the batches it had in flight posted again, one per busy thread (a four-thread
# worker killed mid-flow posted three batches twice in 2 of 8 runs). The killed worker runs one
# thread, so a crash costs at most one batch, and the 0.1 % bound holds with N >= 1000 x
# MOOG_BATCH_SIZE alerts (here 5,000 in fives). A Redis restart costs none: the worker's client rides
# it out before it records the batch.
KILL_ALERTS, KILL_BATCH = 5000, 5


@pytest.mark.slow
def test_worker_kill_and_redis_restart_lose_no_alert(make_stack: StackFactory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    broker = RedisServer(appendonly=True).start()
    try:
        stack = make_stack(
            **FAST,
            REDIS_URL=broker.url,
            MOOG_RATE_LIMIT="40",  # requests: 200 alerts a second, so the kill lands mid-flow
            MOOG_BATCH_SIZE=str(KILL_BATCH),
        )
        with stack.together():
            stack.start_sink()
            _start_remediation(stack)  # beat's reconcile_ledger republishes what the broker lost
            worker = stack.start_worker(
                "forward", queues=FORWARD_QUEUES, concurrency=1, pool="threads"
            )
        alerts = _alerts(KILL_ALERTS)
        publish_alerts(stack, alerts)

        def arrived() -> int:
            # Distinct alerts: a duplicate must not stand in for one that has not arrived yet.
            return len({a["external_id"] for a in stack.sink_events()})

        wait_for(lambda: arrived() >= KILL_ALERTS // 5, 60, "the first fifth of the alerts")
        worker.kill()
        broker.restart()  # AOF brings the queue and the unacked set back
        workers = [
            stack.start_worker("forward2", queues=FORWARD_QUEUES, concurrency=4, pool="threads")
        ]
        wait_for(lambda: arrived() >= KILL_ALERTS // 2, 90, "half the alerts after the restart")
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
            return arrived() >= KILL_ALERTS

        wait_for(supervised_progress, 240, f"{KILL_ALERTS} distinct alerts at the sink", interval=1)
        stack.settle(5)
        received = stack.sink_events()
        ids = [a["external_id"] for a in received]
        assert set(ids) == {a["external_id"] for a in alerts}  # at least once, every one
        duplicates = len(ids) - len(set(ids))
        assert duplicates <= KILL_ALERTS // 1000  # at most 0.1 percent
        # Batched: far fewer requests than alerts (retries and splits aside, one per batch).
        assert stack.sink_stats()["requests"] < KILL_ALERTS / 2
        outbox = Ledger(redis.Redis.from_url(broker.url), OUTBOX)
        wait_for(lambda: outbox.depth() == 0, 30, "every outbox entry settled")
    finally:
        broker.stop()


@pytest.mark.slow
def test_a_half_refused_batch_dead_letters_each_refused_alert(make_stack: StackFactory) -> None:
    stack = make_stack(**FAST, MOOG_BATCH_SIZE="20", MOOG_RATE_LIMIT="200")
    with stack.together():
        stack.start_sink()
        stack.start_web()
        _forward_workers(stack, 1)
    _control(stack, reject_marker="REFUSE-ME")
    alerts = _alerts(20)
    refused = alerts[3::4]  # five of the twenty, spread over the batch
    for alert in refused:
        alert["description"] += " REFUSE-ME"
    publish_alerts(stack, alerts)

    taken = {a["external_id"] for a in alerts} - {a["external_id"] for a in refused}
    runner = CliRunner()

    def dead_letters() -> str:
        result = runner.invoke(main, ["dlq", "list"], env=stack.env, catch_exceptions=False)
        return result.output

    wait_for(lambda: "5 dead letters" in dead_letters(), 60, "5 dead letters")
    received = stack.wait_sink(15, timeout=30)
    stack.settle(2)
    ids = [a["external_id"] for a in stack.sink_events()]
    assert sorted(ids) == sorted(taken)  # every other alert of the batch passed, once
    with stack.engine.connect() as conn:
        letters = conn.execute(select(DeadLetter.correlation_id, DeadLetter.error_type)).all()
    assert sorted(str(c) for c, _ in letters) == sorted(a["external_id"] for a in refused)
    assert {t for _, t in letters} == {"HTTP400"}  # one dead letter per refused alert
    assert len(received) == 15

    def deliveries(alert: dict) -> requests.Response:
        url = f"{stack.web_url}/api/v2/alerts/{alert['external_id']}/deliveries"
        return requests.get(url, headers={"X-API-Key": WEB_API_KEY}, timeout=5)

    # The history answers "was it sent, when, what did Moog say", alert by alert.
    bad = deliveries(refused[0]).json()
    assert bad["sent"] is False and bad["sent_at"] is None
    outcomes = [a["outcome"] for a in bad["attempts"]]
    assert outcomes[0] == "rejected" and outcomes[-1] == "dead_lettered"
    assert bad["attempts"][0]["batch_size"] == 20 and bad["attempts"][-2]["batch_size"] == 1
    assert all(a["status"] == 400 for a in bad["attempts"])
    assert "REFUSE-ME" in bad["attempts"][0]["error"]
    good = deliveries(alerts[0]).json()
    assert good["sent"] is True and good["sent_at"] == good["attempts"][-1]["at"]
    assert good["attempts"][0]["outcome"] == "rejected"  # it came in the refused batch first
    assert good["attempts"][-1]["outcome"] == "delivered" and good["attempts"][-1]["status"] == 200
    assert deliveries({"external_id": str(uuid.uuid4())}).status_code == 404
    outbox = Ledger(redis.Redis.from_url(stack.env["REDIS_URL"]), OUTBOX)
    wait_for(lambda: outbox.depth() == 0, 10, "every outbox entry settled")


@pytest.mark.slow
def test_cloud_format_sends_each_batch_as_one_events_api_array(make_stack: StackFactory) -> None:
    stack = make_stack(
        **FAST, MOOG_FORMAT="cloud", MOOG_BATCH_SIZE="10", MOOG_API_KEY="cloud-key-1"
    )
    with stack.together():
        stack.start_sink()
        _forward_workers(stack, 1)
    alerts = _alerts(30)
    publish_alerts(stack, alerts)

    received = stack.wait_sink(30, timeout=30)
    stack.settle(1)
    assert stack.sink_stats()["requests"] == 3
    by_id = {e["tags"]["external_id"]: e for e in received}
    assert sorted(by_id) == sorted(a["external_id"] for a in alerts)
    first = by_id[alerts[0]["external_id"]]
    assert first["dedupe_key"] == alerts[0]["signature"]
    assert first["severity"] == "major"  # Moog severity 4
    assert first["source"] == alerts[0]["source"] and first["check"] == "syslog"
