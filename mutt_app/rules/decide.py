"""The decision: which rule wins for an event, and what to do with the event (handling and team).

The winning rule (:meth:`mutt_app.rules.compile.RuleSet.match`) gives its prod handling, or its dev
handling for a development host; the device's team, when it has one, overrides the rule's. Without a
match the event is logged only.
"""

from __future__ import annotations

from dataclasses import dataclass

from mutt_app.rules.snapshot import RuleSnapshot
from mutt_app.rules.validate import Rule

FORWARDED_HANDLINGS = frozenset({"Page_and_ticket", "Ticket_only"})
UNMATCHED_HANDLING = "Log_only"


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one event: the winning rule (if any), handling and team."""

    rule_id: int | None
    handling: str
    team: str
    is_dev: bool
    matched: bool

    @property
    def forward(self) -> bool:
        """True when the event goes on to Moogsoft."""
        return self.handling in FORWARDED_HANDLINGS


@dataclass(frozen=True, slots=True)
class Explanation:
    """The rule tester's answer: the decision, and every matching rule in winning order."""

    decision: Decision
    matches: tuple[Rule, ...]


def decide(
    event_message: str,
    event_trap_oid: str | None,
    event_severity: int | None,
    hostname: str,
    snapshot: RuleSnapshot,
    default_team: str,
    deadline: float | None = None,
) -> Decision:
    """The handling of one event: the winning rule's prod or dev handling, and its team.

    Without a match the event is logged only, for the device's team or else ``default_team``.
    Raises :class:`~mutt_app.rules.compile.BudgetExceeded` if matching would run past ``deadline`` (see
    :meth:`~mutt_app.rules.compile.RuleSet.match`).
    """
    rule = snapshot.ruleset.match(event_message, event_trap_oid, event_severity, deadline)
    return _decision(rule, hostname, snapshot, default_team)


def explain(
    event_message: str,
    event_trap_oid: str | None,
    event_severity: int | None,
    hostname: str,
    snapshot: RuleSnapshot,
    default_team: str,
    deadline: float | None = None,
) -> Explanation:
    """:func:`decide`, plus every matching rule in winning order, for the admin rule tester."""
    matches = snapshot.ruleset.candidates(event_message, event_trap_oid, event_severity, deadline)
    decision = _decision(matches[0] if matches else None, hostname, snapshot, default_team)
    return Explanation(decision, tuple(matches))


def _decision(
    rule: Rule | None, hostname: str, snapshot: RuleSnapshot, default_team: str
) -> Decision:
    is_dev = hostname in snapshot.dev_hosts
    device_team = snapshot.device_teams.get(hostname)
    if rule is None:
        team = default_team if device_team is None else device_team
        return Decision(None, UNMATCHED_HANDLING, team, is_dev, False)
    handling = rule.dev_handling if is_dev else rule.prod_handling
    team = rule.team_assignment if device_team is None else device_team
    return Decision(rule.id, handling, team, is_dev, True)
