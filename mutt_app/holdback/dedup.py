"""Deduplication: repeats of a forwarded alert are counted, not forwarded, and Moog gets the count.

An alert's fingerprint is its host, rule and message template (:mod:`mutt_app.events.fingerprint`). The
first alert of a fingerprint is forwarded at once and opens a window of DEDUP_WINDOW_SECONDS (the
rule's ``dedup_window_seconds`` when it has one; 0 turns deduplication off). Alerts of the same
fingerprint within the window are held: audited with ``held_reason='duplicate'`` and
``duplicate_of`` the first alert's correlation_id, and counted in Redis. When a window that had
repeats closes, the flush job (beat, every DEDUP_FLUSH_INTERVAL_SECONDS) sends Moog one update with
the first alert's signature, the repeat count and the last occurrence, through the outbox like any
alert. The next alert after a window closed is forwarded and opens the next window.

Guarantees:
- any number of workers agree: the windows live in Redis and one Lua script decides and counts a
  whole batch atomically (:class:`mutt_app.holdback.scripts.DedupWindows`);
- the count is in Redis before the classify task acks, and the script remembers each batch's answer
  (keyed by a digest of its correlation_ids), so a batch redelivered after a worker was killed gets
  the same verdicts and counts nothing twice;
- a window with repeats never expires: it stays until moved to the closed set, and leaves that only
  after its update is in the outbox. A flush job killed in between publishes the update again with
  the same external_id, which the forward task's idempotency key delivers once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from mutt_app import metrics
from mutt_app.events.fingerprint import fingerprint
from mutt_app.events.schema import Event
from mutt_app.forwarding.moog import repeat_update
from mutt_app.holdback.scripts import DedupWindows, Repeats
from mutt_app.names import DUPLICATE
from mutt_app.rules.engine import Decision, RuleSnapshot
from mutt_app.runtime import Runtime

log = logging.getLogger(__name__)

PREFIX = "mutt:dedup"


@dataclass(frozen=True, slots=True)
class Held:
    """Why one event was not forwarded: ``reason`` (models.HELD_REASONS) and, for a duplicate,
    the correlation_id of the alert it repeats."""

    reason: str
    duplicate_of: str | None = None


Candidate = tuple[Event, Decision, dict[str, Any]]
"""A forwardable event, its decision and its Moog payload."""


def windows(runtime: Runtime) -> DedupWindows:
    """The shared dedup windows.

    A batch's answer is remembered for twice the ledger's republish delay, renewed on every attempt:
    longer than any wait before a batch is tried again (infrastructure retries, a redelivery after
    the visibility timeout, the ledger's republish).
    """
    return DedupWindows(runtime.redis, PREFIX, 2 * runtime.settings.reconcile_after)


def batch_digest(candidates: Sequence[Candidate]) -> str:
    """The key a batch's answer is remembered under in Redis: a digest of its correlation_ids.

    A batch redelivered after a worker was killed has the same digest, so it gets the same answer.
    """
    ids = "\n".join(sorted(event.correlation_id for event, _, _ in candidates))
    return hashlib.blake2b(ids.encode(), digest_size=16).hexdigest()


def window_for(rule_id: int | None, snapshot: RuleSnapshot, default: int) -> int:
    """The dedup window in seconds for an alert of ``rule_id``: the rule's own, else ``default``."""
    if rule_id is None:
        return default
    return snapshot.dedup_windows.get(rule_id, default)


def hold_duplicates(
    runtime: Runtime, snapshot: RuleSnapshot, candidates: Sequence[Candidate]
) -> dict[str, Held]:
    """Count the repeats among ``candidates`` (one batch); returns the held ones by correlation_id.

    Every candidate not returned is to be forwarded now.
    """
    default = runtime.dynamic_config.get("dedup_window_seconds")
    groups: dict[str, list[Candidate]] = {}
    spans: dict[str, int] = {}
    for candidate in candidates:
        event, decision, _ = candidate
        span = window_for(decision.rule_id, snapshot, default)
        if span <= 0:
            continue
        key = fingerprint(event.hostname, decision.rule_id, event.message)
        groups.setdefault(key, []).append(candidate)
        spans[key] = span
    if not groups:
        return {}
    batch_key = batch_digest(candidates)
    repeats = []
    for key, members in groups.items():
        first, last = members[0][0], members[-1][0]
        repeats.append(
            Repeats(
                fingerprint=key,
                first_id=first.correlation_id,
                count=len(members),
                last_at_ms=int(last.timestamp.timestamp() * 1000),
                last_id=last.correlation_id,
                window_seconds=spans[key],
                alert=orjson.dumps(members[0][2]),
            )
        )
    answers = windows(runtime).observe(batch_key, repeats)
    held: dict[str, Held] = {}
    for key, members in groups.items():
        opened, window_id = answers[key]
        for event, _, _ in members[1:] if opened else members:
            held[event.correlation_id] = Held(DUPLICATE, window_id)
    return held


def count_held(held: dict[str, Held], audited: set[str]) -> None:
    """Count held events in ``mutt_alerts_held_total``, once each: only those audited just now."""
    reasons: dict[str, int] = {}
    for correlation_id, reason in held.items():
        if correlation_id in audited:
            reasons[reason.reason] = reasons.get(reason.reason, 0) + 1
    for reason, n in reasons.items():
        metrics.ALERTS_HELD.labels(reason).inc(n)


def flush(runtime: Runtime, publish: Callable[[list[dict[str, Any]]], None]) -> int:
    """Send one update for every dedup window that closed with repeats; returns how many.

    ``publish`` puts alerts in the outbox and on the forward queue (classify's publish_forwards).
    """
    updates = windows(runtime).flush(_update, publish)
    if updates:
        metrics.DEDUP_UPDATES.inc(len(updates))
        log.info(
            "dedup: sent %d repeat-count updates (%d repeats)",
            len(updates),
            sum(u["custom_info"]["duplicate_count"] for u in updates),
        )
    return len(updates)


def _update(window_id: str, data: dict[str, Any]) -> dict[str, Any]:
    window = DedupWindows.closed_window(window_id, data)
    return repeat_update(
        window.alert,
        count=window.count,
        last_at=datetime.fromtimestamp(window.last_at_ms / 1000, UTC),
        last_id=window.last_id,
        window=window.window_seconds,
    )
