"""Worker health probes and SIGHUP reload, on real Celery processes (mutt_app.worker).

* A classify worker whose Redis dies answers 503 on /ready within seconds, naming Redis, stays alive
  on /health (restarting it would not bring Redis back), and is ready again once Redis is back.
* A forward worker and beat answer their own probes, each on its own port, and reload on SIGHUP.
* SIGHUP makes a classify worker (a solo-pool process, as shipped, or prefork) load a rule changed
  behind MUTT's back (in SQL, no rules version bump), logged, without the restart Celery's own SIGHUP
  handler would do.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from mutt_app.db.models import AlertRule, EventAuditLog
from tests.e2e.stack import FORWARD_QUEUES, Process, Stack, StackFactory
from tests.services import RedisServer, wait_for

CLASSIFY_QUEUES = "mutt.classify,mutt.maintenance"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, to kill and start again on the same port."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


def _status(stack: Stack, kind: str, path: str = "/ready") -> int | None:
    try:
        return stack.probe(kind, path).status_code
    except requests.RequestException:
        return None


def test_a_worker_that_loses_redis_is_not_ready_until_redis_is_back(
    make_stack: StackFactory, own_redis: RedisServer
) -> None:
    stack = make_stack(REDIS_URL=own_redis.url)
    stack.start_worker("classify", queues=CLASSIFY_QUEUES, concurrency=1, pool="solo")
    wait_for(lambda: _status(stack, "classify") == 200, 30, "classify ready", interval=0.2)
    ready = stack.probe("classify").json()
    assert ready["status"] == "ready" and ready["kind"] == "classify", ready
    assert ready["broker"] == ready["redis"] == ready["database"] == "ok", ready
    assert ready["rules"].startswith("version "), ready
    assert stack.probe("classify", "/health").status_code == 200

    own_redis.kill()

    def redis_named() -> bool:
        answer = stack.probe("classify")
        return answer.status_code == 503 and "error" in answer.json()["redis"]

    try:
        wait_for(redis_named, 10, "not ready for want of Redis", interval=0.2)
    except TimeoutError as exc:
        raise AssertionError(f"{stack.probe('classify').text}\n{stack.logs()}") from exc
    down = stack.probe("classify").json()
    assert down["status"] == "not ready", down
    assert down["database"] == "ok", down  # only what failed is named
    # Waiting for its broker is not a wedged worker: a restart would not bring Redis back.
    assert stack.probe("classify", "/health").status_code == 200

    own_redis.start()
    try:
        wait_for(lambda: _status(stack, "classify") == 200, 60, "ready again", interval=0.2)
    except TimeoutError as exc:
        raise AssertionError(f"{stack.probe('classify').text}\n{stack.logs()}") from exc
    assert stack.processes["classify"].alive


def test_forward_worker_and_beat_answer_their_own_probes(make_stack: StackFactory) -> None:
    stack = make_stack()
    stack.start_worker("forward", queues=FORWARD_QUEUES, concurrency=1, pool="threads")
    stack.start_beat()
    for kind in ("forward", "beat"):
        try:
            wait_for(lambda k=kind: _status(stack, k) == 200, 30, f"{kind} ready", interval=0.2)
        except TimeoutError as exc:
            raise AssertionError(stack.logs()) from exc
        ready = stack.probe(kind).json()
        assert ready["kind"] == kind and ready["redis"] == ready["database"] == "ok", ready
        assert "rules" not in ready, ready  # neither classifies
        assert stack.probe(kind, "/health").json()["status"] == "alive"
    assert "broker" in stack.probe("forward").json()  # a worker's consumer; beat has none
    assert _status(stack, "classify") is None  # no classify worker, nothing on its port

    # SIGHUP (the units' ExecReload) reloads each in place: no restart, and beat (whose default
    # SIGHUP action is to exit) goes on.
    for name, what in (("forward", "forward worker"), ("beat", "beat")):
        process = stack.processes[name]
        pid = process.popen.pid  # type: ignore[union-attr]
        os.kill(pid, signal.SIGHUP)
        line = f"SIGHUP: {what} {pid} reloaded"
        wait_for(lambda p=process, w=line: w in _log(p), 15, line)  # type: ignore[misc]
        assert process.alive and "Restarting celery worker" not in _log(process)
        assert _status(stack, name) == 200


def _post(stack: Stack, message: str) -> None:
    event = {"timestamp": datetime.now(UTC).isoformat(), "hostname": "hup-1", "message": message}
    response = stack.post(json.dumps(event), **{"Content-Type": "application/json"})
    assert response.status_code == 200, response.text


def _matched_rule(stack: Stack, message: str) -> int | None:
    def audited() -> bool:
        with Session(stack.engine) as session:
            query = select(EventAuditLog.id).where(EventAuditLog.message == message)
            return session.scalars(query).first() is not None

    wait_for(audited, 30, f"{message!r} audited", interval=0.2)
    with Session(stack.engine) as session:
        query = select(EventAuditLog.matched_rule_id).where(EventAuditLog.message == message)
        return session.scalars(query).one()


def _log(process: Process) -> str:
    return process.log_path.read_text(errors="replace")


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_sighup_reloads_a_workers_rules_now_and_logs_it(
    make_stack: StackFactory, pool: str
) -> None:
    # Only a reload can show the rule: no version bump, and the periodic reload is an hour away.
    stack = make_stack(CACHE_RELOAD_INTERVAL="3600")
    stack.start_ingest()
    worker = stack.start_worker("classify", queues=CLASSIFY_QUEUES, concurrency=1, pool=pool)
    pid = worker.popen.pid  # type: ignore[union-attr]

    _post(stack, "HUPRULE link down before the rule")
    assert _matched_rule(stack, "HUPRULE link down before the rule") is None
    with stack.engine.begin() as conn:  # behind MUTT's back: a manual SQL edit
        rule_id = conn.execute(
            insert(AlertRule).returning(AlertRule.id),
            dict(match_string="HUPRULE", match_type="contains", priority=500,
                 prod_handling="Ticket_only", dev_handling="Log_only", team_assignment="NETO"),
        ).scalar_one()  # fmt: skip
    _post(stack, "HUPRULE link down unseen")
    assert _matched_rule(stack, "HUPRULE link down unseen") is None  # the worker's rules are stale

    os.kill(pid, signal.SIGHUP)
    try:
        wait_for(
            lambda: f"SIGHUP: classify worker {pid} reloaded" in _log(worker), 15, "the reload"
        )
    except TimeoutError as exc:
        raise AssertionError(worker.tail()) from exc
    _post(stack, "HUPRULE link down after SIGHUP")
    assert _matched_rule(stack, "HUPRULE link down after SIGHUP") == rule_id

    assert worker.alive and worker.popen.pid == pid  # type: ignore[union-attr]
    log = _log(worker)
    assert "Restarting celery worker" not in log  # what Celery's own SIGHUP handler does
    assert "exited with" not in log  # no pool process was lost to the signal either
    # The process that classified the events (the pool process; solo: the worker itself) reloaded
    # before the third, and said so.
    reloaded = [line for line in log.splitlines() if "SIGHUP: pool process" in line]
    assert len(reloaded) == 1 and "1 active rules" in reloaded[0], reloaded
    assert "dynamic configuration" in reloaded[0]
