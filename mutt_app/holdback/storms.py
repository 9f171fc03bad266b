"""Storm budgets: at most a budget of alerts per device and per rule reach Moog in each window.

Two budgets apply to every alert that deduplication let through: its device's (host, lower-cased)
and its rule's, STORM_BUDGET_PER_DEVICE and STORM_BUDGET_PER_RULE alerts per STORM_WINDOW_SECONDS
(dynamic keys; 0 turns that budget off). An alert is forwarded while both have room, and then counts
in both; past either, it is held: audited with ``held_reason='storm_budget'`` and counted, with its
message template (:func:`mutt_app.events.fingerprint.template`), in the window of the budget that was full.
When a window that held alerts closes, the flush job sends Moog one summary for it
("core-sw-01: 2,345 alerts held in 60 s; top messages ...").

Pages: budgets apply to them too (a storm of pages is still a storm), but a page is counted only
with pages: each budget is kept per lane (``page`` or ``ticket``), so a device flooding tickets
never uses up the budget its pages need.

Defaults: 100 per device and 500 per rule per 60 s. With Moog's default limit of 50 requests a
second, one device can then take at most 100 of the 3,000 slots of a minute, and one rule 500; a
single noisy device or rule cannot starve the rest, while a burst that one incident really causes
on one device (tens of alerts, most of them already folded by deduplication) passes untouched.

Guarantees, as for deduplication: one Lua script decides and counts a whole batch atomically
(:class:`mutt_app.holdback.scripts.StormBudgets`), and remembers its answer by a digest of the batch's
correlation_ids, so a redelivered batch gets the same verdicts and counts nothing twice; a window
that held alerts stays in Redis until its summary is in the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from mutt_app import metrics
from mutt_app.events.fingerprint import template
from mutt_app.forwarding import lanes
from mutt_app.forwarding.moog import storm_summary
from mutt_app.holdback.dedup import Candidate, Held, batch_digest
from mutt_app.holdback.scripts import Budgeted, StormBudgets
from mutt_app.names import STORM_BUDGET
from mutt_app.runtime import Runtime

log = logging.getLogger(__name__)

PREFIX = "mutt:storm"


def budgets(runtime: Runtime) -> StormBudgets:
    """The shared storm windows; a batch's answer is remembered as long as dedup's."""
    return StormBudgets(runtime.redis, PREFIX, 2 * runtime.settings.reconcile_after)


def hold_over_budget(runtime: Runtime, candidates: Sequence[Candidate]) -> dict[str, Held]:
    """Count ``candidates`` (one batch, in order) against the budgets; returns the held ones."""
    config = runtime.dynamic_config
    per_device = config.get("storm_budget_per_device")
    per_rule = config.get("storm_budget_per_rule")
    if not candidates or (per_device <= 0 and per_rule <= 0):
        return {}
    scopes: dict[str, int] = {}
    labels: dict[str, bytes] = {}
    alerts = []
    for event, decision, alert in candidates:
        lane = "page" if lanes.is_page(alert) else "ticket"
        device = rule = None
        if per_device > 0:
            host = event.hostname.lower()
            device = f"device:{lane}:{host}"
            scopes[device] = per_device
            labels.setdefault(device, _label("device", event.hostname, alert))
        if per_rule > 0 and decision.rule_id is not None:
            rule = f"rule:{lane}:{decision.rule_id}"
            scopes[rule] = per_rule
            labels.setdefault(rule, _label("rule", f"rule {decision.rule_id}", alert))
        alerts.append(Budgeted(device, rule, template(event.message)))
    verdicts = budgets(runtime).observe(
        batch_digest(candidates), alerts, scopes, labels, config.get("storm_window_seconds")
    )
    return {
        event.correlation_id: Held(STORM_BUDGET)
        for (event, _, _), held in zip(candidates, verdicts, strict=True)
        if held
    }


def _label(scope: str, name: str, alert: dict[str, Any]) -> bytes:
    return orjson.dumps({"scope": scope, "name": name, "alert": alert})


def summary(window_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """The summary alert of a closed storm window (its Redis fields)."""
    label = orjson.loads(data["label"])
    top = sorted(
        ((field[2:], int(n)) for field, n in data.items() if field.startswith("m:")),
        key=lambda item: (-item[1], item[0]),
    )
    return storm_summary(
        label["alert"],
        window_id=window_id,
        scope=label["scope"],
        name=label["name"],
        held=int(data["count"]),
        window=int(data["window"]),
        top=top,
    )


def flush(runtime: Runtime, publish: Callable[[list[dict[str, Any]]], None]) -> int:
    """Send one summary per storm window that closed with held alerts; returns how many."""
    sent = budgets(runtime).flush(summary, publish)
    for alert in sent:
        metrics.STORM_SUMMARIES.labels(alert["custom_info"]["storm_scope"]).inc()
    if sent:
        log.warning(
            "storm budgets: sent %d summaries (%d alerts held)",
            len(sent),
            sum(a["custom_info"]["storm_held"] for a in sent),
        )
    return len(sent)
