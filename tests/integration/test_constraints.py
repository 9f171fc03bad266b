"""The rules table's constraints are enforced by PostgreSQL itself, not only by forms."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from mutt_app.db.models import AlertRule, DevelopmentHost, DeviceTeam

VALID = {
    "match_string": "link down",
    "trap_oid": None,
    "syslog_severity": None,
    "match_type": "contains",
    "priority": 100,
    "prod_handling": "Page_and_ticket",
    "dev_handling": "Suppress",
    "team_assignment": "NETO",
}


def _insert(engine: Engine, **changes: object) -> None:
    with engine.begin() as conn:
        conn.execute(insert(AlertRule), [{**VALID, **changes}])


@pytest.mark.parametrize(
    ("changes", "constraint"),
    [
        ({"match_type": "glob"}, "ck_alert_rules_match_type"),
        ({"priority": 0}, "ck_alert_rules_priority_range"),
        ({"priority": 1001}, "ck_alert_rules_priority_range"),
        ({"prod_handling": "Suppress"}, "ck_alert_rules_prod_handling"),
        ({"dev_handling": "Page_and_ticket"}, "ck_alert_rules_dev_handling"),
        ({"syslog_severity": 8}, "ck_alert_rules_severity_range"),
        ({"syslog_severity": -1}, "ck_alert_rules_severity_range"),
        ({"match_string": None}, "ck_alert_rules_has_criterion"),
        ({"match_type": "oid_prefix"}, "ck_alert_rules_oid_needs_oid"),
        ({"match_type": "regex", "match_string": None, "trap_oid": "1.3.6"}, "text_needs_string"),
        ({"match_string": ""}, "ck_alert_rules_match_string_nonempty"),
        ({"match_type": "oid_prefix", "trap_oid": ""}, "ck_alert_rules_trap_oid_nonempty"),
        ({"team_assignment": ""}, "ck_alert_rules_team_nonempty"),
    ],
)
def test_database_rejects_invalid_rule(engine: Engine, changes: dict, constraint: str) -> None:
    with pytest.raises(IntegrityError, match=constraint):
        _insert(engine, **changes)


@pytest.mark.parametrize("column", ["match_type", "priority", "prod_handling", "team_assignment"])
def test_database_rejects_missing_required_column(engine: Engine, column: str) -> None:
    with pytest.raises(IntegrityError, match=r"not-null|null value"):
        _insert(engine, **{column: None})


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"match_type": "regex", "match_string": "Interface.*down"},
        {"match_type": "oid_prefix", "match_string": None, "trap_oid": "1.3.6.1.4.1.9"},
        # severity-only: matches on severity alone
        {"match_string": None, "syslog_severity": 3},
        {"syslog_severity": 0},
        {"priority": 1},
        {"priority": 1000},
    ],
)
def test_database_accepts_valid_rule(engine: Engine, changes: dict) -> None:
    _insert(engine, **changes)


def test_hostnames_are_unique(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(DevelopmentHost), [{"hostname": "lab-1"}])
        conn.execute(insert(DeviceTeam), [{"hostname": "core-1", "team_assignment": "NETO"}])
    with pytest.raises(IntegrityError, match="uq_development_hosts_hostname"), engine.begin() as c:
        c.execute(insert(DevelopmentHost), [{"hostname": "lab-1"}])
    with pytest.raises(IntegrityError, match="uq_device_teams_hostname"), engine.begin() as c:
        c.execute(insert(DeviceTeam), [{"hostname": "core-1", "team_assignment": "UNIX"}])


def test_updated_at_is_kept_current_by_the_database(engine: Engine) -> None:
    _insert(engine)
    with engine.begin() as conn:
        before = conn.execute(select(AlertRule.updated_at)).scalar_one()
    time.sleep(0.05)
    with engine.begin() as conn:
        # Raw SQL, as a script or psql would: the trigger still applies.
        conn.execute(text("UPDATE alert_rules SET priority = 200"))
        after = conn.execute(select(AlertRule.updated_at)).scalar_one()
        conn.execute(update(AlertRule).values(team_assignment="UNIX"))
        latest = conn.execute(select(AlertRule.updated_at)).scalar_one()
    assert after > before
    assert latest >= after
