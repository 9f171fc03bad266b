"""What every hold-back stage shares: the alert on its way to Moog, why one was held, one interface.

Between an alert's making and the forward queue, each stage of :mod:`mutt_app.holdback.pipeline`
(maintenance windows, deduplication, flapping, storm budgets, shedding) looks at a batch of
:class:`Candidate` s and answers with :class:`Verdicts`: what it holds (and why), what it changes
(a downgrade), and the new alerts it raises in their place (a flapping alert). What a stage held
back leaves in Redis, as windows that close later; :meth:`Stage.flush` sends the alerts of the
windows that closed (updates, summaries, ends), through the same path as any alert.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from mutt_app import metrics
from mutt_app.events.schema import Event
from mutt_app.rules.decide import Decision
from mutt_app.rules.snapshot import RuleSnapshot
from mutt_app.runtime import Runtime

EVENT = "event"
"""The origin of an alert classify made from an event; other alerts name their producer: a
stage (its name), or one of these."""
HEARTBEAT = "heartbeat"
HEARTBEAT_CLEAR = "heartbeat_clear"
"""A heartbeat's clear: it enters the pipeline after the hold stages (pipeline docstring)."""
META_ALERT = "meta_alert"

Publish = Callable[[list[dict[str, Any]]], None]
"""Hands alerts on towards Moog (what a stage's flush sends its closed windows' alerts to)."""


@dataclass(frozen=True, slots=True)
class Held:
    """Why one event was not forwarded: ``reason`` (models.HELD_REASONS) and, for a duplicate,
    the correlation_id of the alert it repeats."""

    reason: str
    duplicate_of: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """An alert on its way to Moog, with what the stages judge it by.

    ``alert`` is the Moog payload; ``event`` and ``decision`` are set for an alert classify made
    from an event (``origin`` :data:`EVENT`), None for the others (heartbeats, meta-alerts, the
    stages' own updates and summaries), whose ``origin`` names their producer. ``scope`` is
    the storm budget such an alert counts in where a rule's would be: its producer's (a
    heartbeat's, the meta-alerts', a stage's).
    """

    alert: dict[str, Any]
    hostname: str
    message: str
    timestamp: datetime
    rule_id: int | None = None
    team: str | None = None
    trap_oid: str | None = None
    origin: str = EVENT
    scope: str | None = None
    event: Event | None = field(default=None, compare=False)
    decision: Decision | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        """The alert's identity: its external_id (an event's correlation_id)."""
        return str(self.alert["external_id"])

    @property
    def handling(self) -> str | None:
        """The alert's handling (``custom_info.handling``): Page_and_ticket, Ticket_only, ..."""
        info = self.alert.get("custom_info")
        return info.get("handling") if isinstance(info, dict) else None

    @classmethod
    def of_event(cls, event: Event, decision: Decision, alert: dict[str, Any]) -> Candidate:
        """The candidate of a forwardable classify decision and its payload."""
        return cls(
            alert=alert,
            hostname=event.hostname,
            message=event.message,
            timestamp=event.timestamp,
            rule_id=decision.rule_id,
            team=decision.team,
            trap_oid=event.trap_oid,
            event=event,
            decision=decision,
        )

    @classmethod
    def of_alert(cls, alert: dict[str, Any], origin: str) -> Candidate:
        """The candidate of an alert made without an event (a heartbeat, a summary, ...)."""
        info = alert.get("custom_info") if isinstance(alert.get("custom_info"), dict) else {}
        rule_id = info.get("rule_id")
        moment = alert.get("agent_time")
        # A heartbeat's alerts share one budget, so one wide glob cannot flood Moog.
        heartbeat = info.get("heartbeat_id")
        scope = f"{HEARTBEAT} {heartbeat}" if heartbeat is not None else origin
        return cls(
            alert=alert,
            hostname=str(alert.get("source") or ""),
            message=str(alert.get("description") or ""),
            timestamp=(
                datetime.fromtimestamp(moment, UTC)
                if isinstance(moment, int | float)
                else datetime.now(UTC)
            ),
            rule_id=rule_id if isinstance(rule_id, int) else None,
            team=alert.get("class") or info.get("team"),
            trap_oid=None,
            origin=origin,
            scope=None if isinstance(rule_id, int) else scope,
        )

    def with_handling(self, handling: str) -> Candidate:
        """This candidate under another handling (a maintenance downgrade): decision and payload."""
        info = {**self.alert.get("custom_info", {}), "handling": handling}
        decision = None if self.decision is None else replace(self.decision, handling=handling)
        return replace(self, alert={**self.alert, "custom_info": info}, decision=decision)


@dataclass(slots=True)
class Verdicts:
    """A stage's answer for one batch: ``held`` by candidate id, ``changed`` candidates by id
    (they go on in place of the old), ``raised`` alerts by the id of the candidate that raised
    each, and ``delay`` (seconds before publishing) by id."""

    held: dict[str, Held] = field(default_factory=dict)
    changed: dict[str, Candidate] = field(default_factory=dict)
    raised: dict[str, Candidate] = field(default_factory=dict)
    delay: dict[str, float] = field(default_factory=dict)


class Stage(Protocol):
    """One hold-back stage: judge a batch, and later flush the alerts of its closed windows.

    ``name`` names the stage (its held reason, and the origin of the alerts it raises);
    ``watches_held`` are the held reasons whose candidates it still sees (flapping watches the
    duplicates); ``events_only`` says it judges only alerts made from events (repeats and state
    changes are events'; every other producer makes one alert per episode or window).
    """

    name: str
    watches_held: frozenset[str]
    events_only: bool

    def hold(
        self,
        runtime: Runtime,
        snapshot: RuleSnapshot,
        candidates: Sequence[Candidate],
        held: Mapping[str, Held],
    ) -> Verdicts:
        """Judge ``candidates`` (one batch, in order); ``held`` is what earlier stages held."""
        ...

    def flush(self, runtime: Runtime, publish: Publish) -> int:
        """Hand the alerts of the windows that closed to ``publish``; returns how many."""
        ...


def batch_digest(candidates: Sequence[Candidate]) -> str:
    """The key a batch's answer is remembered under in Redis: a digest of its candidates' ids.

    A batch redelivered after a worker was killed has the same digest, so it gets the same answer.
    """
    ids = "\n".join(sorted(candidate.id for candidate in candidates))
    return hashlib.blake2b(ids.encode(), digest_size=16).hexdigest()


def count_held(held: Mapping[str, Held], audited: set[str]) -> None:
    """Count held events in ``mutt_alerts_held_total``, once each: only those audited just now."""
    reasons: dict[str, int] = {}
    for correlation_id, reason in held.items():
        if correlation_id in audited:
            reasons[reason.reason] = reasons.get(reason.reason, 0) + 1
    for reason, n in reasons.items():
        metrics.ALERTS_HELD.labels(reason).inc(n)
