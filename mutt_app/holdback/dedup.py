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

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from mutt_app import metrics
from mutt_app.events.fingerprint import fingerprint
from mutt_app.forwarding.moog import repeat_update
from mutt_app.holdback.base import Candidate, Held, Publish, Verdicts, batch_digest
from mutt_app.holdback.scripts import DedupWindows, Repeats
from mutt_app.rules.engine import RuleSnapshot
from mutt_app.runtime import Runtime

log = logging.getLogger(__name__)

PREFIX = "mutt:dedup"
DUPLICATE = "duplicate"  # models.HELD_REASONS


def windows(runtime: Runtime) -> DedupWindows:
    """The shared dedup windows.

    A batch's answer is remembered for twice the ledger's republish delay, renewed on every attempt:
    longer than any wait before a batch is tried again (infrastructure retries, a redelivery after
    the visibility timeout, the ledger's republish).
    """
    return DedupWindows(runtime.redis, PREFIX, 2 * runtime.settings.reconcile_after)


def window_for(rule_id: int | None, snapshot: RuleSnapshot, default: int) -> int:
    """The dedup window in seconds for an alert of ``rule_id``: the rule's own, else ``default``."""
    if rule_id is None:
        return default
    return snapshot.dedup_windows.get(rule_id, default)


class Dedup:
    """The deduplication stage (module docstring)."""

    name = DUPLICATE
    watches_held: frozenset[str] = frozenset()
    events_only = True

    def hold(
        self,
        runtime: Runtime,
        snapshot: RuleSnapshot,
        candidates: Sequence[Candidate],
        held: Mapping[str, Held],
    ) -> Verdicts:
        """Count the repeats among ``candidates`` (one batch); holds the repeats.

        Every candidate not held is to be forwarded now.
        """
        default = runtime.dynamic_config.get("dedup_window_seconds")
        groups: dict[str, list[Candidate]] = {}
        spans: dict[str, int] = {}
        for candidate in candidates:
            span = window_for(candidate.rule_id, snapshot, default)
            if span <= 0:
                continue
            key = fingerprint(candidate.hostname, candidate.rule_id, candidate.message)
            groups.setdefault(key, []).append(candidate)
            spans[key] = span
        if not groups:
            return Verdicts()
        repeats = []
        for key, members in groups.items():
            first, last = members[0], members[-1]
            repeats.append(
                Repeats(
                    fingerprint=key,
                    first_id=first.id,
                    count=len(members),
                    last_at_ms=int(last.timestamp.timestamp() * 1000),
                    last_id=last.id,
                    window_seconds=spans[key],
                    alert=orjson.dumps(first.alert),
                )
            )
        answers = windows(runtime).observe(batch_digest(candidates), repeats)
        verdicts = Verdicts()
        for key, members in groups.items():
            opened, window_id = answers[key]
            for candidate in members[1:] if opened else members:
                verdicts.held[candidate.id] = Held(DUPLICATE, window_id)
        return verdicts

    def flush(self, runtime: Runtime, publish: Publish) -> int:
        """Send one update for every dedup window that closed with repeats; returns how many."""
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
