"""Deduplication: repeats of a forwarded alert are counted, not forwarded, and Moog gets the count.

An alert's fingerprint is the digest of its rule's dedup key (:mod:`mutt_app.rules.dedup_key`, compiled
with the rule snapshot): by default its host, rule, syslog severity and incident template
(:func:`mutt_app.events.fingerprint.fingerprint`), which keeps addresses and numbered identities, so
"BGP peer 10.0.0.1 down" and "... 10.0.0.2 down", or a severity escalation, are each forwarded at
once; a rule may name its own parts (``alert_rules.dedup_key``). The first alert of a fingerprint
is forwarded at once and opens a window of DEDUP_WINDOW_SECONDS (the rule's
``dedup_window_seconds`` when it has one; 0 turns deduplication off). Alerts of the same fingerprint
within the window are held: audited with ``held_reason='duplicate'`` and ``duplicate_of`` the first
alert's correlation_id, and counted in Redis. When a window that had
repeats closes, the flush job (beat, every DEDUP_FLUSH_INTERVAL_SECONDS) sends Moog one update with
the first alert's signature, the repeat count and the last occurrence, through the outbox like any
alert. The next alert after a window closed is forwarded and opens the next window.

Guarantees:
- any number of workers agree: the windows live in Redis and one Lua script decides and counts a
  whole batch atomically (:class:`DedupWindows`);
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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from mutt_app import metrics
from mutt_app.forwarding.moog import repeat_update
from mutt_app.holdback.base import Candidate, Held, Publish, Verdicts, batch_digest
from mutt_app.holdback.closing import ClosingWindows
from mutt_app.lua.loader import LuaScript
from mutt_app.names import DUPLICATE
from mutt_app.rules.snapshot import RuleSnapshot
from mutt_app.runtime import Runtime

log = logging.getLogger(__name__)

DEDUP_LUA = LuaScript("mutt_app.holdback", "dedup")

PREFIX = "mutt:dedup"


def windows(runtime: Runtime) -> DedupWindows:
    """The shared dedup windows, one per Runtime (its scripts are registered once, not per batch).

    A batch's answer is remembered for twice the ledger's republish delay, renewed on every attempt:
    longer than any wait before a batch is tried again (infrastructure retries, a redelivery after
    the visibility timeout, the ledger's republish).
    """
    return runtime.component(_build_windows)


def _build_windows(runtime: Runtime) -> DedupWindows:
    # Bound to runtime.redis: Runtime.reset forgets the client and its components together.
    return DedupWindows(runtime.redis, PREFIX, 2 * runtime.settings.ledger_reconcile_after)


def window_for(rule_id: int | None, snapshot: RuleSnapshot, default: int) -> int:
    """The dedup window in seconds for an alert of ``rule_id``: the rule's own, else ``default``."""
    return snapshot.dedup_window(rule_id, default)


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
            event = candidate.event
            key = snapshot.dedup_key(candidate.rule_id).fingerprint(
                candidate.rule_id,
                candidate.hostname,
                candidate.message,
                event.syslog_severity if event is not None else None,
                event.raw if event is not None else None,
            )
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


@dataclass(frozen=True, slots=True)
class Repeats:
    """The events of one batch that share a fingerprint, as :class:`DedupWindows` counts them."""

    fingerprint: str
    first_id: str  # correlation_id of the group's first event
    count: int
    last_at_ms: int  # the last event's time
    last_id: str
    window_seconds: int
    alert: bytes  # the first event's Moog payload, JSON


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A dedup window that closed with repeats: what its one update to Moog must carry."""

    window_id: str  # the forwarded alert's correlation_id
    alert: dict[str, Any]
    count: int
    last_at_ms: int
    last_id: str
    window_seconds: int


class DedupWindows(ClosingWindows):
    """Dedup windows per fingerprint, shared by every worker on every host.

    :meth:`observe` decides which events of a batch repeat an alert forwarded within its window and
    counts them, atomically and idempotently per batch; :meth:`close_due` and :meth:`closed` hand
    the windows that closed with repeats to the flush job, which sends one update each and then
    calls :meth:`forget`.
    """

    def __init__(self, client: redis.Redis, prefix: str, remember_seconds: int) -> None:
        super().__init__(client, prefix, remember_seconds)
        self.script = DEDUP_LUA.register(client)

    def window_key(self, fingerprint: str) -> str:
        return f"{self.prefix}:window:{fingerprint}"

    def observe(self, batch_key: str, groups: Sequence[Repeats]) -> dict[str, tuple[bool, str]]:
        """Count ``groups`` (one per fingerprint) of the batch identified by ``batch_key``.

        Returns, per fingerprint, (opened, window id): opened means the group's first event opened
        a new window and is to be forwarded; every other event repeats the window id's alert.
        """
        if not groups:
            return {}
        keys = self.batch_keys(batch_key, (self.window_key(g.fingerprint) for g in groups))
        args: list[Any] = [self.remember]
        for group in groups:
            args += [
                group.first_id,
                group.count,
                group.last_at_ms,
                group.last_id,
                group.window_seconds,
                group.alert,
            ]
        replies = self.script(keys=keys, args=args)
        answers = {}
        for group, reply in zip(groups, replies, strict=True):
            opened, _, window_id = (
                reply.decode() if isinstance(reply, bytes) else reply
            ).partition(":")
            answers[group.fingerprint] = (opened == "1", window_id)
        return answers

    def closed(self, limit: int = 1000) -> list[ClosedWindow]:
        """Closed windows whose update has not been sent yet (at most about ``limit``)."""
        return [self.closed_window(window_id, data) for window_id, data in self.pending(limit)]

    @staticmethod
    def closed_window(window_id: str, data: dict[str, Any]) -> ClosedWindow:
        """A closed window from its id and fields (as :meth:`pending` gives them)."""
        return ClosedWindow(
            window_id=window_id,
            alert=orjson.loads(data["alert"]),
            count=int(data["count"]),
            last_at_ms=int(data.get("last_at") or 0),
            last_id=data.get("last_id") or "",
            window_seconds=int(data["window"]),
        )
