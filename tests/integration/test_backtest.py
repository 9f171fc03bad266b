"""Rule drafts and the backtest on a real PostgreSQL: a known history, a draft that changes some of
its decisions, and exactly those changes reported; the row and time bounds; publishing a draft.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from mutt_app import metrics
from mutt_app.cli import main
from mutt_app.commands.changes import audited_change
from mutt_app.commands.drafts import publish
from mutt_app.config import Settings
from mutt_app.db.models import AlertRule, ConfigAuditLog, DevelopmentHost, RuleDraft
from mutt_app.rules.backtest import run_backtest
from mutt_app.rules.drafts import Draft, DraftError
from mutt_app.web import create_app
from tests.conftest import close_web_app
from tests.factories import RULES, audit_event

ADMIN = "backtest-admin-key-0123456789"
VIEWER = "backtest-viewer-key-0123456789"
AUTH = {"X-API-Key": ADMIN}


@pytest.fixture
def rule_ids(sessions: sessionmaker[Session]) -> dict[str, int]:
    """The live rules, and dev-01 as a development host."""
    with sessions.begin() as session:
        rows = {name: AlertRule(**fields) for name, fields in RULES.items()}
        session.add_all(rows.values())
        session.add(DevelopmentHost(hostname="dev-01"))
        session.flush()
        return {name: row.id for name, row in rows.items()}


@pytest.fixture
def history(sessions: sessionmaker[Session], rule_ids: dict[str, int]) -> dict[str, Any]:
    """A known history, each row decided as the live rules decide it."""
    crit, iface, bgp = rule_ids["critical"], rule_ids["interface"], rule_ids["bgp"]
    with sessions.begin() as s:
        return {
            "critical": audit_event(s, "core-01", "CRITICAL fan failure", crit, "Page_and_ticket"),
            "iface": [
                audit_event(s, f"edge-{n}", f"Interface Gi0/{n} down", iface, "Page_and_ticket")
                for n in range(3)
            ],
            "iface_dev": audit_event(s, "dev-01", "Interface Gi0/7 down", iface, "Email_only"),
            "bgp": audit_event(s, "core-02", "BGP neighbor 10.0.0.1 down", bgp, "Ticket_only"),
            "disk": audit_event(s, "core-03", "disk /var 91% full", None, "Log_only"),
            # Outside a 24-hour window: a draft that would change it must not report it.
            "old": audit_event(
                s,
                "edge-9",
                "Interface Gi0/9 down",
                iface,
                "Page_and_ticket",
                age=timedelta(hours=30),
            ),
        }


def _backtest(
    sessions: sessionmaker[Session], draft: Draft, *, max_rows: int = 1000, budget: float = 30.0
) -> dict[str, Any]:
    with sessions() as session:
        return run_backtest(
            session, draft, 24, default_team="NOC", max_rows=max_rows, budget_seconds=budget
        ).as_dict()


def test_an_empty_draft_changes_nothing_of_a_history_the_live_rules_decided(
    sessions: sessionmaker[Session], history: dict[str, Any]
) -> None:
    answer = _backtest(sessions, Draft())
    assert answer["rows_examined"] == 7  # the 30-hour-old row is outside the window
    assert answer["rows_changed"] == 0 and answer["changes"] == []
    assert answer["truncated"] is False and answer["truncated_by"] is None


@pytest.mark.parametrize("sessions", ["postgresql", "sqlite"], indirect=True)
def test_a_draft_reports_exactly_the_decisions_it_changes(
    sessions: sessionmaker[Session], rule_ids: dict[str, int], history: dict[str, Any]
) -> None:
    iface, bgp = rule_ids["interface"], rule_ids["bgp"]
    draft = Draft(
        # Production Interface-down events become tickets; dev-01's keeps its dev handling.
        update={iface: {"prod_handling": "Ticket_only"}},
        deactivate=frozenset({bgp}),
        create=(
            {
                "match_string": "disk",
                "match_type": "contains",
                "prod_handling": "Email_only",
                "dev_handling": "Log_only",
                "team_assignment": "SYSTEMS",
            },
        ),
    )
    answer = _backtest(sessions, draft)
    assert answer["rows_examined"] == 7
    assert answer["rows_changed"] == 5
    changes = {
        (c["old_rule_id"], c["new_rule_id"], c["new_rule_draft_index"]): c
        for c in answer["changes"]
    }
    assert set(changes) == {(iface, iface, None), (bgp, None, None), (None, None, 0)}
    moved = changes[(iface, iface, None)]
    assert (moved["old_handling"], moved["new_handling"], moved["count"]) == (
        "Page_and_ticket",
        "Ticket_only",
        3,
    )
    assert sorted(moved["sample_correlation_ids"]) == sorted(history["iface"])
    dropped = changes[(bgp, None, None)]
    assert (dropped["old_handling"], dropped["new_handling"], dropped["count"]) == (
        "Ticket_only",
        "Log_only",
        1,
    )
    assert dropped["sample_correlation_ids"] == [history["bgp"]]
    caught = changes[(None, None, 0)]
    assert (caught["old_handling"], caught["new_handling"]) == ("Log_only", "Email_only")
    assert caught["sample_correlation_ids"] == [history["disk"]]
    # The largest group first.
    assert answer["changes"][0]["count"] == 3


def test_a_new_rule_that_outranks_a_live_one_takes_its_events(
    sessions: sessionmaker[Session], rule_ids: dict[str, int], history: dict[str, Any]
) -> None:
    draft = Draft(
        create=(
            {
                "match_string": "fan",
                "match_type": "contains",
                "priority": 950,
                "prod_handling": "Ticket_only",
                "dev_handling": "Log_only",
                "team_assignment": "FACILITIES",
            },
        )
    )
    (change,) = _backtest(sessions, draft)["changes"]
    assert change["old_rule_id"] == rule_ids["critical"]
    assert (change["new_rule_id"], change["new_rule_draft_index"]) == (None, 0)
    assert change["sample_correlation_ids"] == [history["critical"]]


def test_the_row_cap_truncates_and_keeps_the_newest_rows(
    sessions: sessionmaker[Session], rule_ids: dict[str, int], history: dict[str, Any]
) -> None:
    draft = Draft(update={rule_ids["interface"]: {"prod_handling": "Ticket_only"}})
    with sessions.begin() as s:
        newest = [
            audit_event(s, f"edge-n{n}", f"Interface Te1/{n} down", rule_ids["interface"],
                   "Page_and_ticket", age=timedelta(seconds=n + 1))
            for n in range(3)
        ]  # fmt: skip
    counted = metrics.RULE_BACKTESTS.labels("rows")._value.get()
    answer = _backtest(sessions, draft, max_rows=3)
    assert answer["truncated"] is True and answer["truncated_by"] == "rows"
    assert metrics.RULE_BACKTESTS.labels("rows")._value.get() == counted + 1
    assert answer["rows_examined"] == 3
    (change,) = answer["changes"]
    assert sorted(change["sample_correlation_ids"]) == sorted(newest)
    assert answer["oldest_examined"] is not None
    # A cap equal to the rows in the window is not a truncation.
    assert _backtest(sessions, draft, max_rows=10)["truncated"] is False


def test_the_time_budget_truncates(
    sessions: sessionmaker[Session], rule_ids: dict[str, int], history: dict[str, Any]
) -> None:
    counted = metrics.RULE_BACKTESTS.labels("time")._value.get()
    answer = _backtest(sessions, Draft(deactivate=frozenset({rule_ids["bgp"]})), budget=1e-9)
    assert answer["truncated"] is True and answer["truncated_by"] == "time"
    assert metrics.RULE_BACKTESTS.labels("time")._value.get() == counted + 1
    assert answer["rows_examined"] == 0


def test_a_database_slower_than_the_budget_truncates_by_time(
    sessions: sessionmaker[Session], engine: Engine, history: dict[str, Any]
) -> None:
    # Another transaction holds the audit locked: the scan's first statement waits on it. Its
    # session ends itself after 20 s, so a missing statement_timeout fails this test, not hangs it.
    with engine.connect() as holder:
        holder.execute(text("SET idle_in_transaction_session_timeout = '20s'"))
        holder.execute(text("LOCK TABLE event_audit_log IN ACCESS EXCLUSIVE MODE"))
        answer = _backtest(sessions, Draft(), budget=1.0)
        holder.rollback()
    assert answer["truncated"] is True and answer["truncated_by"] == "time"
    assert answer["rows_examined"] == 0
    assert answer["seconds"] < 15


def test_a_draft_naming_a_missing_rule_or_making_an_invalid_one_is_refused(
    sessions: sessionmaker[Session], rule_ids: dict[str, int]
) -> None:
    with pytest.raises(DraftError, match="do not exist"):
        _backtest(sessions, Draft(deactivate=frozenset({9999})))
    with pytest.raises(DraftError, match="invalid regex"):
        _backtest(
            sessions,
            Draft(update={rule_ids["interface"]: {"match_string": "(?<=x)y"}}),
        )


def test_a_draft_carries_a_rules_dedup_key_checked_and_published(
    sessions: sessionmaker[Session], rule_ids: dict[str, int]
) -> None:
    iface = rule_ids["interface"]
    with pytest.raises(
        DraftError, match=f"rule {iface} as changed: dedup_key: unknown part 'pier'"
    ):
        _backtest(sessions, Draft(update={iface: {"dedup_key": "host, pier"}}))
    with pytest.raises(DraftError, match="new rule 1: dedup_key: group:peer needs a regex rule"):
        _backtest(sessions, Draft(create=({**RULES["bgp"], "dedup_key": "group:peer"},)))
    draft = Draft(update={iface: {"dedup_key": "host, masked"}})
    _backtest(sessions, draft)
    with audited_change(sessions, None, changed_by="alice", reason="one per host") as change:
        publish(change, draft)
    with sessions() as session:
        assert session.get(AlertRule, iface).dedup_key == "host, masked"
        (row,) = session.scalars(
            select(ConfigAuditLog).where(ConfigAuditLog.correlation_id == change.correlation_id)
        ).all()
        assert (row.old_values["dedup_key"], row.new_values["dedup_key"]) == (None, "host, masked")


# --- publishing ----------------------------------------------------------------------------------


def test_publishing_a_draft_audits_each_changed_rule_under_one_reason(
    sessions: sessionmaker[Session], rule_ids: dict[str, int]
) -> None:
    iface, bgp, crit = rule_ids["interface"], rule_ids["bgp"], rule_ids["critical"]
    draft = Draft(
        update={
            iface: {"prod_handling": "Ticket_only"},
            crit: {"priority": 900},  # already so: no change, no audit row
        },
        deactivate=frozenset({bgp}),
        create=({**RULES["bgp"], "match_string": "OSPF"},),
    )
    with audited_change(sessions, None, changed_by="alice", reason="quieter links") as change:
        created = publish(change, draft)
    with sessions() as session:
        rows = session.scalars(
            select(ConfigAuditLog).where(ConfigAuditLog.correlation_id == change.correlation_id)
        ).all()
        audited = {(r.operation, r.record_id) for r in rows}
        assert audited == {("UPDATE", iface), ("DELETE", bgp), ("CREATE", created[0]["id"])}
        assert {(r.reason, r.changed_by) for r in rows} == {("quieter links", "alice")}
        assert session.get(AlertRule, iface).prod_handling == "Ticket_only"
        assert session.get(AlertRule, bgp).is_active is False


def test_a_draft_that_no_longer_fits_publishes_nothing(
    sessions: sessionmaker[Session], rule_ids: dict[str, int]
) -> None:
    draft = Draft(
        update={rule_ids["interface"]: {"prod_handling": "Ticket_only"}},
        deactivate=frozenset({424242}),
    )
    with (
        pytest.raises(DraftError),
        audited_change(sessions, None, changed_by="alice", reason="r") as _change,
    ):
        publish(_change, draft)
    with sessions() as session:
        assert session.scalars(select(ConfigAuditLog)).all() == []
        assert session.get(AlertRule, rule_ids["interface"]).prod_handling == "Page_and_ticket"


# --- the REST endpoint ---------------------------------------------------------------------------


@pytest.fixture
def backtest_app(settings: Settings) -> Iterator[Flask]:
    app = create_app(
        settings.model_copy(
            update={"webui_api_keys": SecretStr(f"ops:admin:{ADMIN},looker:viewer:{VIEWER}")}
        )
    )
    app.testing = True
    try:
        yield app
    finally:
        close_web_app(app)


@pytest.fixture
def backtest_client(backtest_app: Flask) -> FlaskClient:
    return backtest_app.test_client()


def test_the_backtest_endpoint_answers_the_changed_decisions(
    backtest_client: FlaskClient, rule_ids: dict[str, int], history: dict[str, Any]
) -> None:
    body = {"hours": 24, "draft": {"deactivate": [rule_ids["bgp"]]}}
    answer = backtest_client.post("/api/v2/rules/backtest", json=body, headers=AUTH)
    assert answer.status_code == 200, answer.json
    assert answer.json["rows_examined"] == 7 and answer.json["rows_changed"] == 1
    assert answer.json["changes"][0]["sample_correlation_ids"] == [history["bgp"]]
    refused = backtest_client.post(
        "/api/v2/rules/backtest", json=body, headers={"X-API-Key": VIEWER}
    )
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"draft": {}}, "missing required field: hours"),
        ({"hours": 0, "draft": {}}, "hours must be at least 1"),
        ({"hours": 24, "draft": {"remove": []}}, "unknown draft field"),
        ({"hours": 24, "draft": {"update": [{"priority": 5}]}}, "draft.update[0].id is missing"),
        ({"hours": 24, "draft": {"update": [{"id": 1}]}}, "names no rule field"),
        ({"hours": 24, "draft": {"create": [{"match_type": "regex"}]}}, "draft.create[0]"),
        ({"hours": 24, "draft": {"deactivate": [99999]}}, "do not exist"),
        ({"hours": 24, "draft": {"deactivate": ["x"]}}, "draft.deactivate[0]"),
    ],
)
def test_a_bad_backtest_request_is_a_422_naming_the_problem(
    backtest_client: FlaskClient, rule_ids: dict[str, int], body: dict[str, Any], needle: str
) -> None:
    answer = backtest_client.post("/api/v2/rules/backtest", json=body, headers=AUTH)
    assert answer.status_code == 422
    assert needle in answer.json["error"]


def test_drafts_through_the_api_are_stored_checked_and_published_rule_by_rule(
    backtest_client: FlaskClient, rule_ids: dict[str, int], sessions: sessionmaker[Session]
) -> None:
    iface, bgp = rule_ids["interface"], rule_ids["bgp"]
    viewer = {"X-API-Key": VIEWER}
    body = {"name": "quieter", "draft": {"deactivate": [bgp]}, "reason": "INC-9"}
    assert (
        backtest_client.post("/api/v2/rules/drafts", json=body, headers=viewer).status_code == 403
    )
    bad = backtest_client.post(
        "/api/v2/rules/drafts", json={**body, "draft": {"deactivate": [424242]}}, headers=AUTH
    )
    assert bad.status_code == 422 and "do not exist" in bad.json["error"]
    created = backtest_client.post("/api/v2/rules/drafts", json=body, headers=AUTH)
    assert created.status_code == 201, created.json
    draft_id = created.json["id"]
    assert created.json["rules_version"] is None  # a draft bumps nothing
    changed = backtest_client.put(
        f"/api/v2/rules/drafts/{draft_id}",
        json={
            "draft": {
                "deactivate": [bgp],
                "update": [{"id": iface, "prod_handling": "Ticket_only"}],
            },
            "reason": "INC-9: and the interface pages",
        },
        headers=AUTH,
    )
    assert changed.status_code == 200, changed.json
    read = backtest_client.get(f"/api/v2/rules/drafts/{draft_id}", headers=viewer)
    assert read.json["draft"]["document"]["update"] == [
        {"id": iface, "prod_handling": "Ticket_only"}
    ]
    assert backtest_client.get("/api/v2/rules/drafts", headers=viewer).json["total"] == 1

    published = backtest_client.post(
        f"/api/v2/rules/drafts/{draft_id}/publish", json={"reason": "INC-9 go"}, headers=AUTH
    )
    assert published.status_code == 200, published.json
    assert published.json["rules_version"] is not None
    with sessions() as session:
        rows = session.scalars(
            select(ConfigAuditLog).where(
                ConfigAuditLog.correlation_id == uuid.UUID(published.json["correlation_id"])
            )
        ).all()
        assert sorted((r.table_name, r.operation, r.record_id) for r in rows) == sorted(
            [
                ("alert_rules", "UPDATE", iface),
                ("alert_rules", "DELETE", bgp),
                ("rule_drafts", "UPDATE", draft_id),
            ]
        )
        assert {r.reason for r in rows} == {"INC-9 go"}
    again = backtest_client.post(
        f"/api/v2/rules/drafts/{draft_id}/publish", json={"reason": "again"}, headers=AUTH
    )
    assert again.status_code == 409
    frozen = backtest_client.put(
        f"/api/v2/rules/drafts/{draft_id}", json={"name": "x", "reason": "r"}, headers=AUTH
    )
    assert frozen.status_code == 409
    assert backtest_client.get("/api/v2/rules/drafts/999", headers=AUTH).status_code == 404


def test_the_cli_backtests_and_publishes_a_stored_draft(
    sessions: sessionmaker[Session],
    rule_ids: dict[str, int],
    history: dict[str, Any],
    pg_url: str,
    redis_url: str,
) -> None:
    bgp = rule_ids["bgp"]
    with audited_change(sessions, None, changed_by="alice", reason="draft") as change:
        draft_id = change.create(
            RuleDraft(name="no bgp", document={"deactivate": [bgp]}, created_by="alice")
        )["id"]
    env = {"DATABASE_URL": pg_url, "REDIS_URL": redis_url}
    run = CliRunner().invoke(main, ["rules", "backtest", str(draft_id)], env=env)
    assert run.exit_code == 0, run.output
    answer = orjson.loads(run.stdout)  # the log line goes to stderr
    assert (answer["rows_examined"], answer["rows_changed"]) == (7, 1)
    assert answer["changes"][0]["sample_correlation_ids"] == [history["bgp"]]
    run = CliRunner().invoke(
        main, ["rules", "publish", str(draft_id), "--reason", "INC-5"], env=env
    )
    assert run.exit_code == 0, run.output
    assert f"draft {draft_id} published (rules version 1" in run.output
    with sessions() as session:
        assert session.get(AlertRule, bgp).is_active is False
        rows = session.scalars(select(ConfigAuditLog).where(ConfigAuditLog.reason == "INC-5"))
        assert sorted((r.table_name, r.record_id) for r in rows) == [
            ("alert_rules", bgp),
            ("rule_drafts", draft_id),
        ]
    again = CliRunner().invoke(main, ["rules", "publish", str(draft_id), "--reason", "x"], env=env)
    assert again.exit_code == 1 and "published already" in again.output
