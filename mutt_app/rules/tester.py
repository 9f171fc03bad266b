"""The rule tester: which active rule would win for a sample event, and which ones it shadows.

It also shows how deduplication would key the event: the incident template
(:func:`mutt_app.events.fingerprint.incident_template`), the winning rule's dedup key with each
part's value, the resulting fingerprint, and the dedup window that would apply, so the normalisation
and a rule's own key can be tried on real messages. Both come from the snapshot, as holdback's
deduplication takes them (:meth:`~mutt_app.rules.snapshot.RuleSnapshot.dedup_key` and
:meth:`~mutt_app.rules.snapshot.RuleSnapshot.dedup_window`), so the tester needs nothing from
holdback, which sits above the rules.

One answer for the admin UI's tester page and ``POST /api/v2/rules/test``. The event is read by the
ingest's own validation (a trap OID inside the message is found the same way), and the rules,
development hosts and device teams come from the database now, not from a worker's cache.

A test is bounded as classification is: the message by ingest's MAX_MESSAGE_CHARS, the rules by the
rule bounds of :mod:`mutt_app.rules.validate`, and the time by CLASSIFY_TIME_BUDGET_SECONDS
(:class:`~mutt_app.rules.compile.BudgetExceeded` when it runs out).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from mutt_app.events.fingerprint import digest, incident_template
from mutt_app.events.schema import Event, validate_item
from mutt_app.rules.compile import BudgetExceeded
from mutt_app.rules.decide import Decision, explain
from mutt_app.rules.dedup_key import DedupKey
from mutt_app.rules.snapshot import compile_dedup_key, load_snapshot


@dataclasses.dataclass(frozen=True)
class Trial:
    """What the rules would do with one sample event."""

    event: Event
    decision: Decision
    matches: list[dict[str, Any]]  # every matching rule as a dict, the winner first
    skipped_rules: list[tuple[int, str]]  # active rules the engine could not compile, and why
    dedup_window_seconds: int  # the winning rule's own window, else the default; 0: off
    dedup_key: DedupKey  # the winning rule's own key, else the default

    @property
    def winner(self) -> dict[str, Any] | None:
        return self.matches[0] if self.matches else None

    @property
    def shadowed(self) -> list[dict[str, Any]]:
        return self.matches[1:]

    def outcome(self) -> dict[str, Any]:
        """The decision as the tester shows it: winner, handling, team, and what it shadows."""
        decision = self.decision
        event = self.event
        key = self.dedup_key
        parts = key.values(event.hostname, event.message, event.syslog_severity, event.raw)
        return {
            "matched": decision.matched,
            "rule_id": decision.rule_id,
            "rule": self.winner,
            "handling": decision.handling,
            "team": decision.team,
            "is_dev": decision.is_dev,
            "forward": decision.forward,
            "shadowed": self.shadowed,
            "template": incident_template(event.message),
            "dedup_key": key.text,
            "dedup_key_parts": [{"part": part, "value": value} for part, value in parts],
            "fingerprint": digest(decision.rule_id, parts),
            "dedup_window_seconds": self.dedup_window_seconds,
        }


def try_event(
    session: Session,
    body: Mapping[str, Any],
    default_team: str,
    *,
    dedup_window: int,
    budget_seconds: float,
    dedup_key: str | None = None,
) -> Trial:
    """Run ``body`` (an event as ingest takes it; only hostname required) past the active rules.

    ``dedup_window`` is the current default dedup window (the dynamic DEDUP_WINDOW_SECONDS), shown
    unless the winning rule has its own. ``dedup_key``: a key to try instead of the winning
    rule's own (or the default), as it would be saved on that rule.

    Raises :class:`mutt_app.events.schema.InvalidEvent` when ingest would refuse it, and
    :class:`~mutt_app.rules.compile.BudgetExceeded` (its message names the budget) when matching would
    run past ``budget_seconds``, and :class:`~mutt_app.rules.dedup_key.DedupKeyError` when
    ``dedup_key`` is not a key of the winning rule.
    """
    deadline = time.perf_counter() + budget_seconds
    event = validate_item(dict(body), required_fields=("hostname",), received_at=datetime.now(UTC))
    snapshot = load_snapshot(session, "database")
    try:
        answer = explain(
            event.message,
            event.trap_oid,
            event.syslog_severity,
            event.hostname,
            snapshot,
            default_team,
            deadline,
        )
    except BudgetExceeded:
        raise BudgetExceeded(
            f"the rule test ran out of its {budget_seconds}s time budget"
            " (CLASSIFY_TIME_BUDGET_SECONDS): the active rules are too slow for this message"
        ) from None
    key = snapshot.dedup_key(answer.decision.rule_id)
    if dedup_key is not None:
        winner = answer.matches[0] if answer.matches else None
        key = compile_dedup_key(
            dedup_key,
            winner.match_type if winner else "contains",
            winner.match_string if winner else None,
        )
    return Trial(
        event=event,
        decision=answer.decision,
        matches=[dataclasses.asdict(rule) for rule in answer.matches],
        skipped_rules=list(snapshot.ruleset.errors),
        dedup_window_seconds=snapshot.dedup_window(answer.decision.rule_id, dedup_window),
        dedup_key=key,
    )
