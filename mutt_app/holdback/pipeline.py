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
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mutt_app.forwarding import lanes
from mutt_app.holdback.backpressure import Shedding
from mutt_app.holdback.base import Candidate, Held, Publish, Stage
from mutt_app.holdback.dedup import Dedup
from mutt_app.holdback.flapping import Flapping
from mutt_app.holdback.storms import Storms
from mutt_app.holdback.windows import Maintenance
from mutt_app.rules.engine import RuleSnapshot
from mutt_app.runtime import Runtime

log = logging.getLogger(__name__)

MAINTENANCE, DEDUP, FLAPPING, STORMS = Maintenance(), Dedup(), Flapping(), Storms()
STAGES: tuple[Stage, ...] = (MAINTENANCE, DEDUP, FLAPPING, STORMS)
SHEDDING = Shedding()
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
    for stage in STAGES:
        seen = [
            c
            for c in current
            if c.origin not in stage.skips
            and (c.id not in passage.held or passage.held[c.id].reason in stage.watches_held)
        ]
        verdicts = stage.hold(runtime, snapshot, seen, passage.held)
        for key, why in verdicts.held.items():
            passage.held.setdefault(key, why)
        if verdicts.changed:
            passage.changed |= verdicts.changed
            current = [verdicts.changed.get(c.id, c) for c in current]
        passage.raised |= verdicts.raised
    passage.forwards = [c for c in current if c.id not in passage.held]
    passage.forwards += passage.raised.values()
    return passage


def publish_forwards(runtime: Runtime, app: Any, alerts: list[dict[str, Any]]) -> dict[str, str]:
    """Shed what backpressure sheds, then hand ``alerts`` to their lanes (outbox, forward tasks).

    Under backpressure (:mod:`mutt_app.holdback.backpressure`) Ticket_only alerts are shed:
    dead-lettered (mode ``dlq``) or published with a delay (``defer``). Returns the shed alerts'
    external_id -> mode.
    """
    if not alerts:
        return {}
    candidates = [Candidate.of_alert(alert, SHEDDING.name) for alert in alerts]
    verdicts = SHEDDING.hold(runtime, None, candidates, {})
    shed = {key: "dlq" for key in verdicts.held} | {key: "defer" for key in verdicts.delay}
    now = [c.alert for c in candidates if c.id not in shed]
    later = [c.alert for c in candidates if c.id in verdicts.delay]
    lanes.send(runtime, app, now)
    if later:
        lanes.send(runtime, app, later, later=max(verdicts.delay.values()))
    return shed


def flush(runtime: Runtime, publish: Publish) -> dict[str, int]:
    """Send, through ``publish``, what the windows that closed held back: one repeat-count update
    per dedup window, one summary per storm-budget window, one "flapping ended" per quiet episode,
    one summary per ended maintenance-window occurrence that held something. Returns how many
    each (-1: that flush failed).

    Each is independent: one failing (it is logged) does not keep the others' alerts back.
    """
    sent = {}
    for name, stage in FLUSHES:
        try:
            sent[name] = stage.flush(runtime, publish)
        except Exception:
            log.exception("flush of %s windows failed; the next run tries again", name)
            sent[name] = -1
    return sent
