"""Storm budgets: at most a budget of alerts per device and per rule reach Moog in each window.

Two budgets apply to every alert that deduplication let through: its device's (host, lower-cased)
and its rule's, STORM_BUDGET_PER_DEVICE and STORM_BUDGET_PER_RULE alerts per STORM_WINDOW_SECONDS
(dynamic keys; 0 turns that budget off). An alert is forwarded while both have room, and then counts
in both; past either, it is held: audited with ``held_reason='storm_budget'`` and counted, with its
message template (:func:`mutt_app.events.fingerprint.template`, the grouping template: addresses and
numbers masked, so a summary's top messages read "BGP peer <ip> down" with one count rather than a
line per peer), in the window of the budget that was full.
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
(:class:`StormBudgets`), and remembers its answer by a digest of the batch's
correlation_ids, so a redelivered batch gets the same verdicts and counts nothing twice; a window
that held alerts stays in Redis until its summary is in the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from mutt_app import metrics
from mutt_app.events.fingerprint import template
from mutt_app.forwarding import lanes
from mutt_app.forwarding.moog import storm_summary
from mutt_app.holdback.base import Candidate, Held, Publish, Verdicts, batch_digest
from mutt_app.holdback.closing import ClosingWindows
from mutt_app.lua.loader import LuaScript
from mutt_app.names import STORM_BUDGET
from mutt_app.rules.snapshot import RuleSnapshot
from mutt_app.runtime import Runtime

log = logging.getLogger(__name__)

STORMS_LUA = LuaScript("mutt_app.holdback", "storms")

PREFIX = "mutt:storm"
MAX_TEMPLATES = 200
"""Distinct message templates one window counts for its summary's top messages. A real storm has
a handful; past this, a held alert of a new template is counted as ``other`` (the window's total
stays exact), so a sender inventing messages cannot grow a window (its summary says so, a log line
and ``mutt_held_window_overflow_total{window="storm"}`` count it)."""


def budgets(runtime: Runtime) -> StormBudgets:
    """The shared storm windows, one per Runtime; a batch's answer is remembered as long as
    dedup's."""
    return runtime.component(_build_budgets)


def _build_budgets(runtime: Runtime) -> StormBudgets:
    # Bound to runtime.redis: Runtime.reset forgets the client and its components together.
    return StormBudgets(runtime.redis, PREFIX, 2 * runtime.settings.ledger_reconcile_after)


class Storms:
    """The storm-budget stage (module docstring)."""

    name = STORM_BUDGET
    watches_held: frozenset[str] = frozenset()
    events_only = False

    def hold(
        self,
        runtime: Runtime,
        snapshot: RuleSnapshot,
        candidates: Sequence[Candidate],
        held: Mapping[str, Held],
    ) -> Verdicts:
        """Count ``candidates`` (one batch, in order) against the budgets; holds those past one."""
        config = runtime.dynamic_config
        per_device = config.get("storm_budget_per_device")
        per_rule = config.get("storm_budget_per_rule")
        if not candidates or (per_device <= 0 and per_rule <= 0):
            return Verdicts()
        scopes: dict[str, int] = {}
        labels: dict[str, bytes] = {}
        alerts = []
        for candidate in candidates:
            alert = candidate.alert
            lane = "page" if lanes.is_page(alert) else "ticket"
            device = rule = None
            if per_device > 0:
                device = f"device:{lane}:{candidate.hostname.lower()}"
                scopes[device] = per_device
                labels.setdefault(device, _label("device", candidate.hostname, alert))
            if per_rule > 0 and candidate.rule_id is not None:
                rule = f"rule:{lane}:{candidate.rule_id}"
                scopes[rule] = per_rule
                labels.setdefault(rule, _label("rule", f"rule {candidate.rule_id}", alert))
            elif per_rule > 0 and candidate.scope is not None:
                # An alert no rule made counts in its producer's budget, of the rule's size.
                rule = f"source:{lane}:{candidate.scope}"
                scopes[rule] = per_rule
                labels.setdefault(rule, _label("source", candidate.scope, alert))
            alerts.append(Budgeted(device, rule, template(candidate.message)))
        found = budgets(runtime).observe(
            batch_digest(candidates), alerts, scopes, labels, config.get("storm_window_seconds")
        )
        return Verdicts(
            held={
                candidate.id: Held(STORM_BUDGET)
                for candidate, over in zip(candidates, found, strict=True)
                if over
            }
        )

    def flush(self, runtime: Runtime, publish: Publish) -> int:
        """Send one summary per storm window that closed with held alerts; returns how many."""
        sent = budgets(runtime).flush(summary, publish)
        for alert in sent:
            info = alert["custom_info"]
            metrics.STORM_SUMMARIES.labels(info["storm_scope"]).inc()
            if info["storm_other_messages"]:
                metrics.HELD_WINDOW_OVERFLOW.labels("storm").inc(info["storm_other_messages"])
                log.warning(
                    "storm budgets: %s: %d held alerts of messages past the %d kept"
                    " (MAX_TEMPLATES) counted as other",
                    alert["signature"],
                    info["storm_other_messages"],
                    MAX_TEMPLATES,
                )
        if sent:
            log.warning(
                "storm budgets: sent %d summaries (%d alerts held)",
                len(sent),
                sum(a["custom_info"]["storm_held"] for a in sent),
            )
        return len(sent)


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
        other=int(data.get("other", 0)),
    )


@dataclass(frozen=True, slots=True)
class Budgeted:
    """One forwardable alert as the storm budgets see it."""

    device_scope: str | None  # None: the device budget is off
    rule_scope: str | None  # None: the rule budget is off
    template: str  # its message template, for the summary's top messages


class StormBudgets(ClosingWindows):
    """At most a budget of alerts per scope (device or rule) and window reach Moog.

    :meth:`observe` decides a batch atomically and idempotently (a redelivered batch gets its first
    answer again and counts nothing twice); the windows that held alerts go to the flush job, which
    sends one summary each.
    """

    def __init__(self, client: redis.Redis, prefix: str, remember_seconds: int) -> None:
        super().__init__(client, prefix, remember_seconds)
        self.script = STORMS_LUA.register(client)

    def window_key(self, scope: str) -> str:
        return f"{self.prefix}:window:{scope}"

    def observe(
        self,
        batch_key: str,
        alerts: Sequence[Budgeted],
        budgets: Mapping[str, int],
        labels: Mapping[str, bytes],
        window_seconds: int,
    ) -> list[bool]:
        """Which of ``alerts`` are held over a budget (True), in order.

        ``budgets`` and ``labels`` give each scope named by the alerts its budget and its label
        (JSON, kept in the window for the summary).
        """
        scopes: list[str] = []
        index: dict[str, int] = {}
        for alert in alerts:
            for scope in (alert.device_scope, alert.rule_scope):
                if scope is not None and scope not in index:
                    scopes.append(scope)
                    index[scope] = len(scopes)
        if not scopes:
            return [False] * len(alerts)
        keys = self.batch_keys(batch_key, (self.window_key(s) for s in scopes))
        args: list[Any] = [self.remember, window_seconds, MAX_TEMPLATES, len(scopes)]
        args += [budgets[s] for s in scopes]
        args += [labels[s] for s in scopes]
        for alert in alerts:
            args += [
                index.get(alert.device_scope or "", 0),
                index.get(alert.rule_scope or "", 0),
                alert.template,
            ]
        replies = self.script(keys=keys, args=args)
        return [(r.decode() if isinstance(r, bytes) else r) == "h" for r in replies]
