"""The probes' verdicts, the reload counter and the solo pool's lease renewal, without a worker
(tests/chaos/test_worker_probes.py runs them in real workers)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import Mock

import pytest
from celery.concurrency.solo import TaskPool as SoloPool

from mutt_app import metrics, redelivery
from mutt_app.config import load_settings
from mutt_app.forwarding.lanes import QUEUES as FORWARD_LANES
from mutt_app.redelivery import LeaseRenewal, TaskInLoop, runs_tasks_in_loop
from mutt_app.runtime import PROBE, Runtime
from mutt_app.worker.health import LOOP_STALL_SECONDS, Health, worker_kind
from mutt_app.worker.reload import ReloadRequests


def test_a_worker_consuming_only_forward_lanes_is_a_forward_worker() -> None:
    assert worker_kind(FORWARD_LANES) == "forward"
    assert worker_kind(FORWARD_LANES[:1]) == "forward"
    assert worker_kind(["mutt.classify", "mutt.maintenance"]) == "classify"
    assert worker_kind(["mutt.classify", *FORWARD_LANES]) == "classify"
    assert worker_kind([]) == "classify"  # no -Q: every queue


def _health(tmp_path: Path, kind: str = "forward") -> Health:
    # Nothing listens on port 1: Redis is away. The database is the embedded SQLite default.
    settings = load_settings({"REDIS_URL": "redis://127.0.0.1:1/0", "MUTT_DATA_DIR": str(tmp_path)})
    return Health(kind, Runtime(settings, PROBE), consumer=True)


def test_readiness_names_what_is_away(tmp_path: Path) -> None:
    health = _health(tmp_path)
    assert health.readiness()[0] is False  # no check has run yet
    health.broker_connected = True
    results = health.check_once()
    assert results["database"] == "ok"
    assert "error" in results["redis"]
    ready, body = health.readiness()
    assert not ready and body["status"] == "not ready" and body["broker"] == "ok", body


def test_liveness_fails_only_for_a_connected_consumer_whose_loop_stopped(tmp_path: Path) -> None:
    health = _health(tmp_path)
    health.last_tick = time.monotonic() - LOOP_STALL_SECONDS - 1
    health.broker_connected = False  # reconnecting: a restart would not help
    assert health.liveness()[0] is True
    health.broker_connected = True
    alive, body = health.liveness()
    assert not alive and body["status"] == "stalled", body
    health.tick()
    assert health.liveness()[0] is True


def test_a_solo_worker_running_a_task_is_alive_though_its_loop_is_silent(tmp_path: Path) -> None:
    # The solo pool runs a task in the event loop's thread: a long maintenance job silences the
    # loop as it never silenced a prefork parent, and is no reason to restart the worker.
    health = _health(tmp_path, "classify")
    health.broker_connected = True
    health.last_tick = time.monotonic() - LOOP_STALL_SECONDS - 1
    health.tasks = TaskInLoop()
    assert health.liveness()[0] is False
    health.tasks.since = time.monotonic() - LOOP_STALL_SECONDS - 1
    assert health.liveness()[0] is True
    health.tasks.since = None
    assert health.liveness()[0] is False


def _solo_consumer() -> SimpleNamespace:
    solo = SoloPool.__new__(SoloPool)  # its __init__ sends worker_process_init: not wanted here
    return SimpleNamespace(
        task_consumer=SimpleNamespace(channel=SimpleNamespace(unacked_index_key="unacked_index")),
        app=SimpleNamespace(conf=SimpleNamespace(broker_transport_options={})),
        timer=Mock(),
        pool=solo,
    )


def test_a_solo_worker_renews_its_leases_from_a_thread_while_a_task_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    renewed: list[object] = []
    monkeypatch.setattr(redelivery, "renew", renewed.append)
    monkeypatch.setattr(redelivery, "renew_interval", lambda _: 0.02)
    tasks = TaskInLoop()
    monkeypatch.setattr(tasks, "watch", lambda: tasks)  # no signal handlers in the test process
    monkeypatch.setattr(redelivery, "TASK_IN_LOOP", tasks)
    consumer = _solo_consumer()
    assert runs_tasks_in_loop(consumer) and not runs_tasks_in_loop(SimpleNamespace(pool=None))
    step = LeaseRenewal(consumer)
    step.start(consumer)
    try:
        consumer.timer.call_repeatedly.assert_called_once()  # the loop's own renewals, as before
        time.sleep(0.2)
        assert renewed == []  # idle: the loop's timer renews, a wedged loop renews nothing
        tasks.since = time.monotonic()
        deadline = time.monotonic() + 5
        while not renewed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert renewed == [consumer.task_consumer.channel]
    finally:
        step.stop(consumer)
    time.sleep(0.1)
    count = len(renewed)
    time.sleep(0.2)
    assert len(renewed) == count  # stopped with the consumer


def _wait_for_count(requests: ReloadRequests, count: int, answer: multiprocessing.Queue) -> None:
    deadline = time.monotonic() + 10
    while requests.count != count and time.monotonic() < deadline:
        time.sleep(0.01)
    answer.put(requests.count)


def test_a_pool_process_sees_reloads_asked_after_it_was_forked() -> None:
    requests = ReloadRequests()
    context = multiprocessing.get_context("fork")
    answer = context.Queue()
    child = context.Process(target=_wait_for_count, args=(requests, 2, answer))
    child.start()
    requests.ask()
    assert requests.ask() == 2
    assert answer.get(timeout=15) == 2
    child.join(10)


def test_a_killed_process_s_held_messages_leave_the_merged_gauge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A solo process SIGKILLed while holding a message left mutt_alerter_processing_list_depth at
    # 1 in the host's samples; its successor's start forgets it.
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    script = "from mutt_app import metrics; metrics.ALERTER_PROCESSING_DEPTH.set(1)"
    dead = subprocess.run([sys.executable, "-c", f"{script}; import os; print(os.getpid())"],
                          env=env, capture_output=True, text=True, check=True)  # fmt: skip
    alive = tmp_path / f"gauge_livesum_{os.getpid()}.db"
    alive.write_bytes((tmp_path / f"gauge_livesum_{dead.stdout.strip()}.db").read_bytes())
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert metrics.forget_dead_processes() == [int(dead.stdout)]
    assert [p.name for p in tmp_path.glob("gauge_live*")] == [alive.name]
