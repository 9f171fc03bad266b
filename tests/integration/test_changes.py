"""The audited-change service (:mod:`mutt_app.commands.changes`) as the REST API, the admin UI and the CLI use
it, on a real PostgreSQL and Redis: the admin path locks the row, and all three write the same audit.
"""

from __future__ import annotations

import getpass
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.cli import main
from mutt_app.config import Settings
from mutt_app.db.models import AlertRule, ConfigAuditLog, DevelopmentHost, DeviceTeam
from mutt_app.rules.cache import VERSION_KEY
from tests.factories import RULE_FORM
from tests.records import config_audit
from tests.web import KEY, form_token, login

REASON = "change under test"


def _add_rule(sessions: sessionmaker[Session], **fields: Any) -> int:
    values = {**RULE_FORM, "trap_oid": None, "syslog_severity": None, "is_active": True, **fields}
    values["priority"] = int(values["priority"])
    with sessions.begin() as session:
        rule = AlertRule(**values)
        session.add(rule)
        session.flush()
        return rule.id


# --- the admin path locks the row ---------------------------------------------------------------


def _wait_for_lock_waiter(engine: Engine, timeout: float = 15.0) -> None:
    """Return once another backend of this database waits on a lock; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    with engine.connect() as watcher:
        while time.monotonic() < deadline:
            waiting = watcher.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
            ).scalar()
            if waiting:
                return
            time.sleep(0.05)
    pytest.fail("the admin edit never waited for the row lock")


def test_an_admin_edit_waits_for_the_row_lock_and_audits_the_value_it_replaced(
    admin_client: FlaskClient, sessions: sessionmaker[Session], engine: Engine
) -> None:
    """A concurrent writer holds the rule's row lock and commits priority 700 while the admin's
    edit (priority 600) is in flight: the edit must wait, then record 700 as the old value. Without
    the lock the admin read 500 first and its audit row claimed it replaced 500: a lost update."""
    rule_id = _add_rule(sessions, match_string="LOCKED", priority="500")
    assert login(admin_client, "alice") == 302
    url = f"/admin/rules/edit/?id={rule_id}"
    form = {**RULE_FORM, "match_string": "LOCKED", "priority": "600", "reason": "raise it"}
    form["csrf_token"] = form_token(admin_client, url)
    answers: list[int] = []

    with engine.connect() as holder:
        holder.execute(
            text("SELECT id FROM alert_rules WHERE id = :id FOR UPDATE"), {"id": rule_id}
        )
        holder.execute(
            text("UPDATE alert_rules SET priority = 700 WHERE id = :id"), {"id": rule_id}
        )
        editor = threading.Thread(
            target=lambda: answers.append(admin_client.post(url, data=form).status_code),
            daemon=True,
        )
        editor.start()
        _wait_for_lock_waiter(engine)
        assert editor.is_alive(), "the admin edit finished while the row was locked"
        holder.commit()
    editor.join(timeout=30)
    assert not editor.is_alive() and answers == [302]

    with sessions() as session:
        assert session.get(AlertRule, rule_id).priority == 600
    (update,) = config_audit(sessions, "alert_rules")
    assert (update.operation, update.record_id, update.reason) == ("UPDATE", rule_id, "raise it")
    assert update.old_values["priority"] == 700, "the audit must show the value the edit replaced"
    assert update.new_values["priority"] == 600


# --- API, admin and CLI write the same audit ------------------------------------------------------


class Interface:
    """One way of making changes: the REST API, the admin UI or the CLI."""

    changed_by: str

    def __init__(self, client: FlaskClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings


class Api(Interface):
    changed_by = "api-key"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        response = self.client.open(
            f"/api/v2{path}",
            method=method,
            json={**(body or {}), "reason": REASON},
            headers={"X-API-Key": KEY},
        )
        assert response.status_code in (200, 201), response.get_data(as_text=True)

    def disable_rule(self, rule_id: int) -> None:
        self.call("PUT", f"/rules/{rule_id}", {"is_active": False})

    def enable_rule(self, rule_id: int) -> None:
        self.call("PUT", f"/rules/{rule_id}", {"is_active": True})

    def add_dev_host(self, hostname: str) -> None:
        self.call("POST", "/dev-hosts", {"hostname": hostname})

    def remove_dev_host(self, hostname: str) -> None:
        self.call("DELETE", f"/dev-hosts/{hostname}")

    def add_team(self, hostname: str, team: str) -> None:
        self.call("POST", "/teams", {"hostname": hostname, "team_assignment": team})

    def change_team(self, hostname: str, team: str) -> None:
        self.call("PUT", f"/teams/{hostname}", {"team_assignment": team})

    def remove_team(self, hostname: str) -> None:
        self.call("DELETE", f"/teams/{hostname}")


class Admin(Interface):
    changed_by = "alice"

    def post(self, path: str, data: dict[str, Any]) -> None:
        if not hasattr(self, "token"):
            assert login(self.client, "alice") == 302
            self.token = form_token(self.client, "/admin/hosts/new/")
        data = {**data, "reason": REASON, "csrf_token": self.token}
        response = self.client.post(path, data=data)
        assert response.status_code == 302, response.get_data(as_text=True)

    def _id(self, model: type[DevelopmentHost] | type[DeviceTeam], hostname: str) -> int:
        """The id the admin's URLs and forms name a host's row by."""
        with self.client.application.extensions["mutt"].sessions() as session:
            return session.scalars(select(model.id).where(model.hostname == hostname)).one()

    def disable_rule(self, rule_id: int) -> None:
        self.post("/admin/rules/action/", {"action": "deactivate", "rowid": [str(rule_id)]})

    def enable_rule(self, rule_id: int) -> None:
        self.post("/admin/rules/action/", {"action": "activate", "rowid": [str(rule_id)]})

    def add_dev_host(self, hostname: str) -> None:
        self.post("/admin/hosts/new/", {"hostname": hostname, "description": ""})

    def remove_dev_host(self, hostname: str) -> None:
        self.post("/admin/hosts/delete/", {"id": str(self._id(DevelopmentHost, hostname))})

    def add_team(self, hostname: str, team: str) -> None:
        self.post("/admin/teams/new/", {"hostname": hostname, "team_assignment": team})

    def change_team(self, hostname: str, team: str) -> None:
        path = f"/admin/teams/edit/?id={self._id(DeviceTeam, hostname)}"
        self.post(path, {"hostname": hostname, "team_assignment": team})

    def remove_team(self, hostname: str) -> None:
        self.post("/admin/teams/delete/", {"id": str(self._id(DeviceTeam, hostname))})


class Cli(Interface):
    changed_by = f"cli:{getpass.getuser()}"

    def mutt(self, *args: str) -> None:
        env = {"DATABASE_URL": self.settings.database_url, "REDIS_URL": self.settings.redis_url}
        result = CliRunner().invoke(main, [*args, "--reason", REASON], env=env)
        assert result.exit_code == 0, result.output
        assert "warning" not in result.output, result.output

    def disable_rule(self, rule_id: int) -> None:
        self.mutt("rules", "disable", str(rule_id))

    def enable_rule(self, rule_id: int) -> None:
        self.mutt("rules", "enable", str(rule_id))

    def add_dev_host(self, hostname: str) -> None:
        self.mutt("dev-hosts", "add", hostname)

    def remove_dev_host(self, hostname: str) -> None:
        self.mutt("dev-hosts", "remove", hostname)

    def add_team(self, hostname: str, team: str) -> None:
        self.mutt("teams", "set", hostname, team)

    def change_team(self, hostname: str, team: str) -> None:
        self.mutt("teams", "set", hostname, team)

    def remove_team(self, hostname: str) -> None:
        self.mutt("teams", "remove", hostname)


STEPS = (
    "disable_rule",
    "enable_rule",
    "add_dev_host",
    "remove_dev_host",
    "add_team",
    "change_team",
    "remove_team",
)


def _shape(row: ConfigAuditLog) -> tuple[Any, ...]:
    """An audit row without what differs between two runs (ids, times, the correlation id)."""

    def values(found: dict[str, Any] | None) -> dict[str, Any] | None:
        if found is None:
            return None
        return {
            name: "<id>" if name == "id" else "<time>" if name.endswith("_at") else value
            for name, value in found.items()
        }

    return (
        row.table_name,
        row.operation,
        row.reason,
        values(row.old_values),
        values(row.new_values),
    )


RULE = {
    "id": "<id>",
    "match_type": "contains",
    "match_string": "SHAPE",
    "trap_oid": None,
    "syslog_severity": None,
    "priority": 500,
    "prod_handling": "Ticket_only",
    "dev_handling": "Suppress",
    "team_assignment": "NETO",
    "is_active": True,
    "dedup_window_seconds": None,
    "dedup_key": None,
    "clears_rule_id": None,
    "created_at": "<time>",
    "updated_at": "<time>",
}
HOST = {"id": "<id>", "hostname": "lab-01", "description": None, "added_at": "<time>"}
TEAM = {"id": "<id>", "hostname": "core-01", "team_assignment": "CORE", "updated_at": "<time>"}
OFF = {**RULE, "is_active": False}


def _rules(ui: Interface, rule_id: int) -> None:
    ui.disable_rule(rule_id)
    ui.enable_rule(rule_id)


def _dev_hosts(ui: Interface, rule_id: int) -> None:
    ui.add_dev_host("lab-01")
    ui.remove_dev_host("lab-01")


def _teams(ui: Interface, rule_id: int) -> None:
    ui.add_team("core-01", "CORE")
    ui.change_team("core-01", "EDGE")
    ui.remove_team("core-01")


KINDS: dict[str, tuple[Callable[[Interface, int], None], list[tuple[Any, ...]]]] = {
    "alert_rules": (
        _rules,
        [
            ("alert_rules", "UPDATE", REASON, RULE, OFF),
            ("alert_rules", "UPDATE", REASON, OFF, RULE),
        ],
    ),
    "development_hosts": (
        _dev_hosts,
        [
            ("development_hosts", "CREATE", REASON, None, HOST),
            ("development_hosts", "DELETE", REASON, HOST, None),
        ],
    ),
    "device_teams": (
        _teams,
        [
            ("device_teams", "CREATE", REASON, None, TEAM),
            ("device_teams", "UPDATE", REASON, TEAM, {**TEAM, "team_assignment": "EDGE"}),
            ("device_teams", "DELETE", REASON, {**TEAM, "team_assignment": "EDGE"}, None),
        ],
    ),
}


@pytest.mark.parametrize("table", list(KINDS))
@pytest.mark.parametrize("interface", [Api, Admin, Cli], ids=["api", "admin", "cli"])
def test_api_admin_and_cli_changes_write_the_same_audit(
    interface: type[Interface],
    table: str,
    admin_client: FlaskClient,
    settings: Settings,
    sessions: sessionmaker[Session],
    redis_client: redis.Redis,
) -> None:
    """Each interface makes the same changes; each change writes one audit row of the same shape
    (who differs, as it should), has its own correlation id and bumps the rules version once."""
    steps, expected = KINDS[table]
    rule_id = _add_rule(sessions, match_string="SHAPE", priority="500")
    ui = interface(admin_client, settings)
    versions: list[int] = []

    def bumped(step: Callable[..., None]) -> Callable[..., None]:
        def run(*args: Any) -> None:
            step(*args)
            versions.append(int(redis_client.get(VERSION_KEY) or 0))

        return run

    for name in STEPS:  # each step is one change
        setattr(ui, name, bumped(getattr(ui, name)))

    steps(ui, rule_id)

    rows = config_audit(sessions, table)
    assert [_shape(row) for row in rows] == expected
    assert {row.changed_by for row in rows} == {interface.changed_by}
    assert len({row.correlation_id for row in rows}) == len(rows)
    assert all(isinstance(row.changed_at, datetime) for row in rows)
    assert versions == list(range(1, len(expected) + 1)), "one rules-version bump per change"


# --- the CLI's own refusals ------------------------------------------------------------------------


def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output


def test_cli_changes_refuse_what_they_cannot_do(
    settings: Settings, sessions: sessionmaker[Session], redis_client: redis.Redis
) -> None:
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    rule_id = _add_rule(sessions, match_string="CLI", priority="500")

    assert _cli(env, "rules", "disable", "999999", "--reason", "x") == (
        1,
        "Error: no rule 999999\n",
    )
    code, output = _cli(env, "rules", "disable", str(rule_id))
    assert code == 2 and "Missing option '--reason'" in output
    assert _cli(env, "rules", "disable", str(rule_id), "--reason", " ") == (
        1,
        "Error: --reason must not be blank\n",
    )
    assert _cli(env, "rules", "enable", str(rule_id), "--reason", "x") == (
        0,
        f"rule {rule_id} already is enabled\n",
    )
    assert _cli(env, "dev-hosts", "add", "lab-01", "--reason", "x")[0] == 0
    assert _cli(env, "dev-hosts", "add", " lab-01 ", "--reason", "x") == (
        1,
        "Error: development host 'lab-01' already exists\n",
    )
    assert _cli(env, "teams", "remove", "nowhere", "--reason", "x") == (
        1,
        "Error: no team mapping for host 'nowhere'\n",
    )
    assert _cli(env, "teams", "set", "core-01", " ", "--reason", "x") == (
        1,
        "Error: the team must not be blank\n",
    )
    # Only the one change that was made is audited and announced to the workers.
    with sessions() as session:
        audit = session.scalars(select(ConfigAuditLog.table_name)).all()
    assert [name for name in audit if name != "users"] == ["development_hosts"]
    assert int(redis_client.get(VERSION_KEY) or 0) == 1


def test_cli_changes_on_the_embedded_default(tmp_path: Any) -> None:
    """SQLite has no row locks (no FOR UPDATE is sent): the change still applies and is audited;
    the embedded Redis has a port only ``mutt run`` knows, so the version is not bumped there."""
    env = {"MUTT_DATA_DIR": str(tmp_path)}
    assert _cli(env, "db", "upgrade")[0] == 0
    assert _cli(env, "db", "seed")[0] == 0
    code, output = _cli(env, "rules", "disable", "1", "--reason", "noisy")
    assert code == 0 and output.startswith("rule 1 disabled (rules version not bumped")
    assert (
        _cli(env, "rules", "disable", "1", "--reason", "noisy")[1] == "rule 1 already is disabled\n"
    )
    engine = create_engine(f"sqlite:///{tmp_path / 'mutt.db'}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT operation, changed_by, reason FROM config_audit_log"
                    " WHERE table_name = 'alert_rules' AND record_id = 1 ORDER BY id"
                )
            ).all()
            active = connection.execute(text("SELECT is_active FROM alert_rules WHERE id = 1"))
            assert not active.scalar_one()
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [
        ("CREATE", "mutt db seed", "seed rules"),
        ("UPDATE", f"cli:{getpass.getuser()}", "noisy"),
    ]
