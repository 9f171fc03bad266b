"""The hold-back pipeline: the stages between an alert's making and the forward queue, in order.

1. maintenance windows (:mod:`mutt_app.holdback.windows`): suppress, or downgrade a page;
2. deduplication (:mod:`mutt_app.holdback.dedup`): repeats counted, one update later;
3. flapping (:mod:`mutt_app.holdback.flapping`): a flapping pair is one alert (it watches the
   duplicates too);
4. storm budgets (:mod:`mutt_app.holdback.storms`): per device and per rule and lane;
5. shedding (:mod:`mutt_app.holdback.backpressure`), then the lanes
   (:func:`mutt_app.forwarding.lanes.send`).

Each stage sees what the ones before let through (a stage's ``watches_held`` lets it see some
held ones too); an alert held by one stage keeps that stage's reason. :func:`flush` is what beat's
``flush_held`` runs: every stage's closed windows, each independent of the others.

One path to Moog. Every alert that can reach Moog passes here, through :func:`to_moog` (classify
decisions, heartbeat alerts and clears, unhandled meta-alerts, and the stages' own dedup updates,
flapping alerts, storm and window summaries), so maintenance windows, storm budgets, shedding and
the lanes apply to all of them, and no producer can go past a budget (a heartbeat whose glob
matched 200,000 quiet hosts once did).

No loops. An alert a stage made enters the pipeline *after* that stage: a storm summary passes
only shedding and the lanes, so it is never counted against the budget that produced it; a
maintenance summary passes dedup, flapping and the budgets, not the windows; a flapping alert and
a dedup update pass the budgets. The stages form a line, so no alert can come back to a stage
that made it, directly or through another, and each flush makes at most one alert per closed
window. Dedup and flapping judge only alerts made from events (``Stage.events_only``): every
other producer makes one alert per episode or window, with nothing to fold. An alert no rule
made counts in its producer's storm budget (``Candidate.scope``: one heartbeat's, the
meta-alerts', a stage's), of STORM_BUDGET_PER_RULE, per lane, like a rule's.

Heartbeat clears are never held. A heartbeat's clear (``custom_info.heartbeat`` "cleared")
enters as :data:`~mutt_app.holdback.base.HEARTBEAT_CLEAR`, after the last hold stage: it passes
only shedding and the lanes. The heartbeat check sends one only for an episode whose raise was
forwarded (:mod:`mutt_app.watch.heartbeats`), so it closes an alert Moog shows, and their number
is bounded by the raises that passed the budget; holding one would leave that alert open for
ever (nothing sends it again). An episode whose raise was held is closed without a clear.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mutt_app import metrics, tracing
from mutt_app.forwarding import lanes
from mutt_app.holdback.backpressure import Shedding
from mutt_app.holdback.base import EVENT, HEARTBEAT, HEARTBEAT_CLEAR, Candidate, Held, Stage
from mutt_app.holdback.dedup import Dedup
from mutt_app.holdback.flapping import Flapping
from mutt_app.holdback.storms import Storms
from mutt_app.holdback.windows import Maintenance
from mutt_app.rules.cache import RuleCache
from mutt_app.rules.snapshot import RuleSnapshot
from mutt_app.runtime import Runtime

log = logging.getLogger(__name__)

MAINTENANCE, DEDUP, FLAPPING, STORMS = Maintenance(), Dedup(), Flapping(), Storms()
STAGES: tuple[Stage, ...] = (MAINTENANCE, DEDUP, FLAPPING, STORMS)
SHEDDING = Shedding()
# Where an alert enters the line: after the stage that made it (the module docstring).
_ENTRY = {stage.name: index + 1 for index, stage in enumerate(STAGES)}
# A heartbeat's clear closes what Moog already shows: no hold stage may keep it (module docstring).
_ENTRY[HEARTBEAT_CLEAR] = len(STAGES)
# flush_held's answer names each stage's windows so.
FLUSHES: tuple[tuple[str, Stage], ...] = (
    ("dedup", DEDUP),
    ("storm", STORMS),
    ("flapping", FLAPPING),
    ("maintenance", MAINTENANCE),
)


@dataclass(slots=True)
class Passage:
    """What the stages made of one batch: the candidates to forward now (in order), the held
    ones' reasons by id, the alerts the stages raised (by the id of the candidate that raised
    each; among the forwards), and the candidates a stage changed, as they went on (by id)."""

    forwards: list[Candidate] = field(default_factory=list)
    held: dict[str, Held] = field(default_factory=dict)
    raised: dict[str, Candidate] = field(default_factory=dict)
    changed: dict[str, Candidate] = field(default_factory=dict)


def hold_back(runtime: Runtime, snapshot: RuleSnapshot, candidates: Sequence[Candidate]) -> Passage:
    """Pass ``candidates`` (one batch, in order) through the stages. Each stage keeps its state in
    Redis before the caller acks, and a redelivered batch gets the same verdicts."""
    passage = Passage()
    current = list(candidates)
    for index, stage in enumerate(STAGES):
        seen = [
            c
            for c in current
            if _ENTRY.get(c.origin, 0) <= index
            and (c.origin == EVENT or not stage.events_only)
            and (c.id not in passage.held or passage.held[c.id].reason in stage.watches_held)
        ]
        with tracing.tracer.start_as_current_span(f"mutt.holdback.{stage.name}") as span:
            verdicts = stage.hold(runtime, snapshot, seen, passage.held)
            if span.is_recording():
                span.set_attributes(_counts(seen, verdicts.held, verdicts.raised))
        for key, why in verdicts.held.items():
            passage.held.setdefault(key, why)
        if verdicts.changed:
            passage.changed |= verdicts.changed
            current = [verdicts.changed.get(c.id, c) for c in current]
        passage.raised |= verdicts.raised
        current += verdicts.raised.values()  # on to the next stages (a flapping alert: budgets)
    passage.forwards = [c for c in current if c.id not in passage.held]
    return passage


def hand_on(
    runtime: Runtime,
    app: Any,
    candidates: Sequence[Candidate],
    snapshot: RuleSnapshot | None = None,
) -> Passage:
    """The one path to Moog: ``candidates`` through the stages (:func:`hold_back`), then what
    they let through to shedding and the lanes (:func:`publish_forwards`). The shed ones are
    among the held (reason ``shed``) when dead-lettered. ``snapshot``: the rules the caller
    already holds (classify's), else the current ones."""
    if snapshot is None:
        snapshot = runtime.component(RuleCache.of).current()
    passage = hold_back(runtime, snapshot, candidates)
    shed = publish_forwards(runtime, app, [c.alert for c in passage.forwards])
    passage.held |= {key: Held(SHEDDING.name) for key, mode in shed.items() if mode == "dlq"}
    return passage


def to_moog(runtime: Runtime, app: Any, alerts: list[dict[str, Any]], origin: str) -> Passage:
    """Hand Moog payloads made without an event (``origin`` names their producer: a heartbeat,
    the meta-alerts, a stage's flush) to the one path (:func:`hand_on`). What is held counts in
    ``mutt_alerts_held_total`` here (classify counts its events once audited)."""
    if not alerts:
        return Passage()
    passage = hand_on(
        runtime, app, [Candidate.of_alert(alert, _entering(alert, origin)) for alert in alerts]
    )
    reasons: dict[str, int] = {}
    for why in passage.held.values():
        reasons[why.reason] = reasons.get(why.reason, 0) + 1
    for reason, n in reasons.items():
        metrics.ALERTS_HELD.labels(reason).inc(n)
    if passage.held:
        log.warning(
            "%d of %d %s alerts held back: %s", len(passage.held), len(alerts), origin, reasons
        )
    return passage


def _counts(
    seen: Sequence[Candidate], held: dict[str, Held], raised: dict[str, Candidate]
) -> dict[str, int]:
    """A stage's span attributes: the alerts it saw, held and raised."""
    return {
        "mutt.alerts.in": len(seen),
        "mutt.alerts.held": len(held),
        "mutt.alerts.raised": len(raised),
    }


def _entering(alert: dict[str, Any], origin: str) -> str:
    """Where ``alert`` from ``origin`` enters the line: a heartbeat's clear as
    :data:`HEARTBEAT_CLEAR` (after the hold stages), any other at its producer's place."""
    info = alert.get("custom_info")
    if origin == HEARTBEAT and isinstance(info, dict) and info.get("heartbeat") == "cleared":
        return HEARTBEAT_CLEAR
    return origin


def publish_forwards(runtime: Runtime, app: Any, alerts: list[dict[str, Any]]) -> dict[str, str]:
    """Shed what backpressure sheds, then hand ``alerts`` to their lanes (outbox, forward tasks).

    Under backpressure (:mod:`mutt_app.holdback.backpressure`) Ticket_only alerts are shed:
    dead-lettered (mode ``dlq``) or published with a delay (``defer``). Returns the shed alerts'
    external_id -> mode.
    """
    if not alerts:
        return {}
    candidates = [Candidate.of_alert(alert, SHEDDING.name) for alert in alerts]
    with tracing.tracer.start_as_current_span(f"mutt.holdback.{SHEDDING.name}") as span:
        verdicts = SHEDDING.hold(runtime, None, candidates, {})
        if span.is_recording():
            span.set_attributes(_counts(candidates, verdicts.held, {}))
            span.set_attribute("mutt.alerts.delayed", len(verdicts.delay))
    shed = {key: "dlq" for key in verdicts.held} | {key: "defer" for key in verdicts.delay}
    now = [c.alert for c in candidates if c.id not in shed]
    later = [c.alert for c in candidates if c.id in verdicts.delay]
    lanes.send(runtime, app, now)
    if later:
        lanes.send(runtime, app, later, later=max(verdicts.delay.values()))
    return shed


def flush(runtime: Runtime, app: Any) -> dict[str, int]:
    """Send, by the one path (:func:`to_moog`, entering after the stage that made them), what the
    windows that closed held back: one repeat-count update per dedup window, one summary per
    storm-budget window, one "flapping ended" per quiet episode, one summary per ended
    maintenance-window occurrence that held something. Returns how many each (-1: that flush
    failed).

    Each is independent: one failing (it is logged) does not keep the others' alerts back.
    """
    sent = {}
    for name, stage in FLUSHES:
        try:
            sent[name] = stage.flush(runtime, _sender(runtime, app, stage.name))
        except Exception:
            log.exception("flush of %s windows failed; the next run tries again", name)
            sent[name] = -1
    return sent


def _sender(runtime: Runtime, app: Any, origin: str) -> Callable[[list[dict[str, Any]]], None]:
    def send(alerts: list[dict[str, Any]]) -> None:
        to_moog(runtime, app, alerts, origin)

    return send
