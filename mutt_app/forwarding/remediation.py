"""Remediation: replaying dead letters, and giving up on them for good (beat's remediate_dlq).

Every run (REMEDIATION_INTERVAL_SECONDS), under a Redis lock so only one runs at a time anywhere:
- Moog's health is checked first; forward dead letters are replayed only while it is healthy (classify
  dead letters do not need Moog and are replayed regardless);
- an item is replayed no sooner than its backoff (REMEDIATION_BACKOFF_BASE x replay number, capped),
  up to REMEDIATION_MAX_RETRIES replays, DLQ_BATCH_SIZE at a time;
- an item past its last replay, or one that cannot be decoded, moves to the poison table.
An item is published before its dead-letter row is deleted (in that row's transaction), so a run
killed at any moment leaves every item in the DLQ, re-enqueued, or in poison: at worst replayed
twice, which the audit's and forward's idempotency absorb.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from celery import Celery
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mutt_app import metrics
from mutt_app.db.models import DeadLetter, PoisonLetter
from mutt_app.forwarding import deadletters
from mutt_app.forwarding.deadletters import replay_call
from mutt_app.lua.loader import LuaScript
from mutt_app.names import CLASSIFY_TASK, FORWARD_TASK, WORK_QUEUES
from mutt_app.runtime import Runtime

log = logging.getLogger(__name__)

LOCK_KEY = "mutt:remediation:lock"
TASK_SOURCES = {CLASSIFY_TASK: "alerter", FORWARD_TASK: "moog"}


@dataclass
class RunReport:
    """What one remediation run did."""

    replayed: int = 0
    poisoned: int = 0
    skipped_moog_unhealthy: bool = False
    locked_out: bool = False


def run_remediation(runtime: Runtime, app: Celery) -> RunReport:
    """One remediation run; safe to call from several processes at once (only one proceeds)."""
    settings = runtime.settings
    report = RunReport()
    token = uuid.uuid4().hex
    lock_seconds = max(settings.remediation_interval_seconds * 5, 60)
    if not runtime.redis.set(LOCK_KEY, token, nx=True, ex=lock_seconds):
        report.locked_out = True
        return report
    started = time.perf_counter()
    try:
        tasks = [CLASSIFY_TASK]
        if moog_healthy(settings):
            tasks.append(FORWARD_TASK)
        else:
            report.skipped_moog_unhealthy = True
            log.warning("Moog is unhealthy: forward dead letters wait for the next run")
        with runtime.sessions.begin() as session:
            for letter in _due(session, tasks, settings.dlq_batch_size):
                if _replay_or_poison(session, app, letter, settings):
                    report.replayed += 1
                else:
                    report.poisoned += 1
        _sample_depths(runtime)
    finally:
        _release(runtime, token)
        metrics.REMEDIATION_SCAN.observe(time.perf_counter() - started)
    if report.replayed or report.poisoned:
        log.info("remediation: %d replayed, %d moved to poison", report.replayed, report.poisoned)
    return report


def moog_healthy(settings: Any) -> bool:
    """Any answer below 500 from the webhook URL counts as healthy (MOOG_HEALTH_CHECK_ENABLED)."""
    if not settings.moog_health_check_enabled:
        return True
    if not settings.moog_webhook_url:
        return False
    try:
        response = requests.get(settings.moog_webhook_url, timeout=settings.moog_health_timeout)
    except requests.RequestException:
        return False
    return response.status_code < 500


def _due(session: Session, tasks: list[str], limit: int) -> list[DeadLetter]:
    query = (
        select(DeadLetter)
        .where(DeadLetter.task_name.in_(tasks))
        .where(DeadLetter.next_replay_at <= datetime.now(UTC))
        .order_by(DeadLetter.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def _replay_or_poison(session: Session, app: Celery, letter: DeadLetter, settings: Any) -> bool:
    """Replay ``letter`` (True) or move it to poison (False); its row goes either way."""
    source = TASK_SOURCES.get(letter.task_name, "unknown")
    if replay_call(letter) is None:
        _poison(session, letter, "payload cannot be decoded")
        metrics.REMEDIATION_REPLAYED.labels(source, "poison").inc()
        return False
    if letter.replays >= settings.remediation_max_retries:
        _poison(session, letter, f"still failing after {letter.replays} replays")
        metrics.REMEDIATION_REPLAYED.labels(source, "poison").inc()
        return False
    deadletters.replay(session, app, letter, replays=letter.replays + 1)
    metrics.REMEDIATION_REPLAYED.labels(source, "success").inc()
    return True


def _poison(session: Session, letter: DeadLetter, reason: str) -> None:
    session.add(
        PoisonLetter(
            task_name=letter.task_name,
            queue=letter.queue,
            payload=letter.payload,
            raw_payload=letter.raw_payload,
            correlation_id=letter.correlation_id,
            error_type=letter.error_type,
            error_message=letter.error_message,
            attempts=letter.attempts,
            replays=letter.replays,
            first_failed_at=letter.first_failed_at,
            last_failed_at=letter.last_failed_at,
            reason=reason,
        )
    )
    session.execute(delete(DeadLetter).where(DeadLetter.id == letter.id))
    log.error("dead letter %d (%s) moved to poison: %s", letter.id, letter.task_name, reason)


def _sample_depths(runtime: Runtime) -> None:
    with runtime.sessions() as session:
        depths = {task: deadletters.count(session, task_name=task) for task in TASK_SOURCES}
        for task, depth in depths.items():
            metrics.DLQ_DEPTH.labels(task).set(depth)
        metrics.ALERTER_DLQ_DEPTH.set(depths[CLASSIFY_TASK])
        metrics.MOOG_DLQ_DEPTH.set(depths[FORWARD_TASK])
        metrics.POISON_DEPTH.set(deadletters.count(session, poison=True))
    for queue in WORK_QUEUES:
        metrics.QUEUE_DEPTH.labels(queue).set(runtime.redis.llen(queue))


RELEASE_LUA = LuaScript("mutt_app.forwarding", "release_lock")


def _release(runtime: Runtime, token: str) -> None:
    # Only the holder releases: a run that outlived its lock must not free another run's.
    RELEASE_LUA.register(runtime.redis)(keys=[LOCK_KEY], args=[token])
