"""The rules a new MUTT starts with: the spec's catch-all and its three examples."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from mutt_app.commands.changes import Change
from mutt_app.db.models import AlertRule

# The spec's catch-all (priority 1, Log_only in prod, Suppress in dev, team NETO) had no criterion at
# all, which the rules table forbids; as a severity-only rule on severity 7 it catches every event that
# carries a syslog severity. Events without one (unknown SNMP traps, typically) still fall through to
# the default handling and count towards the unhandled meta-alert.
SEED_RULES: tuple[dict[str, Any], ...] = (
    {
        "match_string": None,
        "syslog_severity": 7,
        "match_type": "contains",
        "priority": 1,
        "prod_handling": "Log_only",
        "dev_handling": "Suppress",
        "team_assignment": "NETO",
    },
    {
        "match_string": "CRITICAL",
        "match_type": "contains",
        "priority": 900,
        "prod_handling": "Page_and_ticket",
        "dev_handling": "Ticket_only",
        "team_assignment": "NETO",
    },
    {
        "match_string": "Interface.*down",
        "match_type": "regex",
        "priority": 800,
        "prod_handling": "Page_and_ticket",
        "dev_handling": "Email_only",
        "team_assignment": "NETO",
    },
    {
        "match_string": "disk.*full",
        "match_type": "regex",
        "priority": 700,
        "prod_handling": "Ticket_only",
        "dev_handling": "Log_only",
        "team_assignment": "UNIX",
    },
)

_IDENTITY = ("match_string", "trap_oid", "syslog_severity", "match_type", "priority")


def seed_rules(change: Change) -> list[AlertRule]:
    """Insert, as part of ``change``, the seed rules that are not there yet; returns those it added.

    A rule counts as present when one with the same criteria and priority exists, active or not, so
    running it again (or after an admin deactivated a seed rule) adds nothing. Each added rule is
    recorded in the configuration audit, under the change's correlation id.
    """
    added: list[AlertRule] = []
    for spec in SEED_RULES:
        criteria = [getattr(AlertRule, key) == spec[key] for key in _IDENTITY if spec.get(key)]
        criteria += [
            getattr(AlertRule, key).is_(None) for key in _IDENTITY if spec.get(key) is None
        ]
        if change.session.scalars(select(AlertRule.id).where(*criteria).limit(1)).first() is None:
            rule = AlertRule(**spec)
            change.create(rule)
            added.append(rule)
    return added
