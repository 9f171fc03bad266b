"""Flower as deployed: a real Flower process with basic auth, its own /metrics, and task history that
survives a restart (--persistent), watching a real worker."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import requests

from tests.e2e.conftest import StackFactory
from tests.e2e.stack import Process, Stack, answers
from tests.services import free_port, wait_for

LOGIN = ("ops", "flower-pw-42")


def _start_flower(stack: Stack, port: int, name: str) -> Process:
    argv = [
        # As deployed: through `mutt flower`, which checks the login and then runs Flower.
        sys.executable, "-m", "mutt_app.cli", "flower",
        f"--port={port}", "--address=127.0.0.1",
        "--persistent=True", f"--db={stack.logdir / 'flower.db'}", "--state_save_interval=60000",
    ]  # fmt: skip
    process = Process(name, argv, stack.env, stack.logdir).start()
    stack.processes[name] = process
    wait_for(
        lambda: not process.alive or answers(f"http://127.0.0.1:{port}/healthcheck"),
        60,
        "flower to start",
    )
    assert process.alive, process.tail()
    return process


def _tasks(base: str) -> dict:
    return requests.get(f"{base}/api/tasks", auth=LOGIN, timeout=5).json()


def test_flower_needs_its_login_serves_metrics_and_keeps_history(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(FLOWER_BASIC_AUTH=":".join(LOGIN))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    flower = _start_flower(stack, port, "flower")

    for path in ("/", "/tasks", "/api/tasks", "/api/workers"):
        refused = requests.get(base + path, timeout=5)
        assert refused.status_code == 401, path
        assert requests.get(base + path, auth=("ops", "wrong"), timeout=5).status_code == 401
        assert requests.get(base + path, auth=LOGIN, timeout=5).status_code == 200, path
    metrics = requests.get(f"{base}/metrics", auth=LOGIN, timeout=5)
    assert metrics.status_code == 200 and "flower_" in metrics.text

    with stack.together():
        stack.start_sink().start_ingest()
        stack.start_worker()
    event = {"timestamp": datetime.now(UTC).isoformat(), "hostname": "h", "message": "m"}
    assert stack.post(json.dumps(event)).status_code == 200
    stack.wait_audited(1)
    wait_for(
        lambda: any(t.get("name") == "mutt.classify_event" for t in _tasks(base).values()),
        30,
        "flower to see the classify task",
    )
    seen = {tid for tid, t in _tasks(base).items() if t.get("name") == "mutt.classify_event"}
    # /metrics (like /healthcheck) answers without the login: Flower does not guard it, so
    # Prometheus scrapes it plainly; Flower listens on localhost (systemd) or in-cluster only.
    assert any(
        line.startswith("flower_events_total")
        for line in requests.get(f"{base}/metrics", timeout=5).text.splitlines()
    )

    # Restarted (SIGTERM saves the state), Flower still knows the task.
    stack.processes["worker"].stop()
    flower.stop()
    _start_flower(stack, port, "flower-again")
    assert seen <= set(_tasks(base))
