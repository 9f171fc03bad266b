"""The command layer (:mod:`mutt_app.commands`): each command validates, locks, applies and audits
once, and refuses with a domain error (NotFound, Invalid, Conflict) that writes nothing and that the
REST API answers with 404, 422 and 409."""

from __future__ import annotations

from contextlib import AbstractContextManager

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.commands import drafts, hosts, rules, teams
from mutt_app.commands.changes import Change, audited_change
from mutt_app.commands.errors import CommandError, Conflict, Invalid, NotFound
from mutt_app.db.models import AlertRule, ConfigAuditLog
from mutt_app.rules.drafts import Draft
from mutt_app.web.api.refusals import status_of

RULE = {
    "match_type": "contains",
    "match_string": "LINK-3-UPDOWN",
    "prod_handling": "Page_and_ticket",
    "dev_handling": "Ticket_only",
    "team_assignment": "NetOps",
}


def _sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _audit_rows(sessions: sessionmaker[Session]) -> list[ConfigAuditLog]:
    with sessions() as session:
        return list(session.scalars(select(ConfigAuditLog).order_by(ConfigAuditLog.id)))


def _change(sessions: sessionmaker[Session]) -> AbstractContextManager[Change]:
    return audited_change(sessions, None, changed_by="tester", reason="test")


def test_a_refused_command_writes_nothing(engine: Engine) -> None:
    sessions = _sessions(engine)
    with _change(sessions) as change:
        rule_id = rules.create(change, rules.new_rule(RULE))["id"]
    before = len(_audit_rows(sessions))
    with pytest.raises(Invalid, match="cannot clear itself"), _change(sessions) as change:
        rules.update(change, rule_id, {"priority": 500, "clears_rule_id": rule_id})
    with pytest.raises(Invalid, match="no rule 424242"), _change(sessions) as change:
        rules.create(change, rules.new_rule({**RULE, "clears_rule_id": 424242}))
    with pytest.raises(NotFound, match="no rule 424242"), _change(sessions) as change:
        rules.deactivate_id(change, 424242)
    with pytest.raises(Invalid, match="priority must be an integer from 1 to 1000"):
        rules.new_rule({**RULE, "priority": 0})
    assert len(_audit_rows(sessions)) == before
    with sessions() as session:
        assert session.get(AlertRule, rule_id).priority == 100


def test_hosts_and_teams_refuse_blank_and_unknown_hosts(engine: Engine) -> None:
    sessions = _sessions(engine)
    with pytest.raises(Invalid, match="hostname must not be blank"), _change(sessions) as change:
        hosts.add(change, "   ", None)
    with pytest.raises(Invalid, match="team_assignment must not be blank"):
        teams.team(" ")
    with pytest.raises(NotFound, match="no development host 'nope'"), _change(sessions) as change:
        hosts.remove(change, "nope")
    with (
        pytest.raises(NotFound, match="no team mapping for host 'nope'"),
        _change(sessions) as change,
    ):
        teams.remove(change, "nope")
    with _change(sessions) as change:
        assert hosts.add(change, " dev-01 ", "lab")["hostname"] == "dev-01"
        teams.add(change, "core-01", "NetOps")
        assert teams.set_team(change, "core-01", "NetOps").team_assignment == "NetOps"
    operations = [(row.operation, row.table_name) for row in _audit_rows(sessions)]
    assert operations == [("CREATE", "development_hosts"), ("CREATE", "device_teams")]


def test_a_draft_is_published_once(engine: Engine) -> None:
    sessions = _sessions(engine)
    with audited_change(sessions, None, changed_by="alice", reason="draft") as change:
        draft_id = drafts.create(change, "one more", Draft(create=(RULE,)))["id"]
    with _change(sessions) as change:
        row, created = drafts.publish_stored(change, draft_id)
        assert row.published_by == "tester" and len(created) == 1
    with pytest.raises(Conflict, match="published already"), _change(sessions) as change:
        drafts.publish_stored(change, draft_id)
    with pytest.raises(NotFound, match="no draft 424242"), _change(sessions) as change:
        drafts.publish_stored(change, 424242)
    with pytest.raises(Conflict, match="is published"), _change(sessions) as change:
        drafts.save(change, draft_id, name="renamed")
    with pytest.raises(Invalid, match="does not fit the live rules"), _change(sessions) as change:
        drafts.create(change, "gone", Draft(deactivate=frozenset({424242})))


def test_change_found_refuses_ids_past_the_database_integer(engine: Engine) -> None:
    with _sessions(engine)() as session:
        change = Change(session, "tester", None)
        with pytest.raises(NotFound, match="no rule 2147483648"):
            change.found(AlertRule, 2**31, "rule")


@pytest.mark.parametrize(
    ("error", "status"),
    [(NotFound("x"), 404), (Invalid("x"), 422), (Conflict("x"), 409), (CommandError("x"), 422)],
)
def test_the_api_answers_each_refusal_with_its_status(error: CommandError, status: int) -> None:
    assert status_of(error) == status
