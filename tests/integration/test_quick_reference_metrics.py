"""The quick reference's per-stage dead-letter depths and the web UI's Redis read latency, served
under their v2.5 names (the processing lists, which need a running worker, are in
tests/e2e/test_processing_lists.py)."""

from __future__ import annotations

from pathlib import Path

import redis
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.config import Settings, load_settings
from mutt_app.forwarding.deadletters import add_dead_letter
from mutt_app.forwarding.remediation import run_remediation
from mutt_app.names import CLASSIFY_QUEUE, CLASSIFY_TASK, FORWARD_TASK, TICKET_QUEUE
from mutt_app.runtime import Runtime
from mutt_app.watch import dashboard


def _letters(sessions: sessionmaker[Session], task: str, queue: str, n: int) -> None:
    with sessions.begin() as session:
        for _ in range(n):
            # Not due for a day: remediation counts them and leaves them be.
            add_dead_letter(
                session, task_name=task, queue=queue, payload={}, error="e", backoff_base=86_400
            )


def test_each_stages_dlq_depth_is_sampled_by_remediation(
    sessions: sessionmaker[Session], pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": pg_url, "REDIS_URL": redis_url, "MUTT_DATA_DIR": str(tmp_path)}
    runtime = Runtime(load_settings({**env, "MOOG_HEALTH_CHECK_ENABLED": "false"}))
    for letters in ((3, 1), (1, 4)):
        _letters(sessions, CLASSIFY_TASK, CLASSIFY_QUEUE, letters[0])
        _letters(sessions, FORWARD_TASK, TICKET_QUEUE, letters[1])
        report = run_remediation(runtime, runtime.celery)
        assert (report.replayed, report.poisoned) == (0, 0)
    assert REGISTRY.get_sample_value("mutt_alerter_dlq_depth") == 4
    assert REGISTRY.get_sample_value("mutt_moog_dlq_depth") == 5
    assert REGISTRY.get_sample_value("mutt_dlq_depth", {"task": FORWARD_TASK}) == 5


def test_the_dashboards_redis_reads_are_timed_once_per_computation(
    sessions: sessionmaker[Session], redis_client: redis.Redis, settings: Settings
) -> None:
    name = "mutt_webui_redis_scan_latency_seconds_count"
    before = REGISTRY.get_sample_value(name) or 0.0
    dashboard.cached_metrics(sessions, redis_client, settings)
    dashboard.cached_metrics(
        sessions, redis_client, settings
    )  # from the cache: no Redis figures read
    assert REGISTRY.get_sample_value(name) == before + 1
    down = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    dashboard.collect(sessions, down, settings)  # unreachable: nothing read, nothing timed
    assert REGISTRY.get_sample_value(name) == before + 1
