"""Unhandled templates on a real PostgreSQL (and SQLite): grouping by the dedup normaliser, the
bounded and indexed audit query, the suggested rule, the API and the dashboard part."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from mutt_app.config import Settings
from mutt_app.db.engine import session_factory
from mutt_app.db.models import EventAuditLog
from mutt_app.db.partitions import ensure_partitions
from mutt_app.events.fingerprint import template
from mutt_app.rules.compile import compile_rules
from mutt_app.rules.validate import Rule
from mutt_app.watch.dashboard import collect
from mutt_app.watch.unhandled import suggested_rule, unhandled_templates
from tests.web import call

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

# Groups of messages that differ only in what the normaliser masks, and one message of another kind.
GROUPS = [
    [
        "BGP neighbor 10.0.1.1 Down: hold time expired (after 35ms)",
        "BGP neighbor 10.0.22.1 Down: hold time expired (after 120ms)",
        "BGP  neighbor 2001:db8::7 Down: hold time expired (after 9ms)",
    ],
    [
        "Port 0011.2233.4455 moved from Gi0/1 to Gi0/2 at 2026-12-03T10:15:30Z",
        "Port 00:11:22:33:44:ff moved from Gi0/1 to Gi0/2 at 2026-12-03 10:16:02.5+01:00",
    ],
    [
        "session 3f2504e0-4f89-11d3-9a0c-0305e82c3301 closed by peer, id 0x1f, ref deadbeef42",
        "session 6ba7b810-9dad-11d1-80b4-00c04fd430c8 closed by peer, id 0x2a, ref 0badc0de99",
    ],
    ["Dec  1 10:15:30 fan tray [2] failed; temp=41% (limit 60%) & rising ~ check #3"],
]


def _rows(session: Session, rows: list[tuple[str, str, datetime, int | None]]) -> None:
    for hostname, message, moment, rule_id in rows:
        session.add(
            EventAuditLog(
                event_timestamp=moment,
                received_at=moment,
                hostname=hostname,
                message=message,
                matched_rule_id=rule_id,
                handling_decision="Log_only",
                team_assignment="NETO",
                held_reason="unmatched" if rule_id is None else "log_only",
                correlation_id=uuid.uuid4(),
            )
        )


def test_each_suggested_rule_matches_its_templates_messages_and_no_other() -> None:
    rules = []
    for number, messages in enumerate(GROUPS, start=1):
        (key,) = {template(m) for m in messages}  # the normaliser makes each group one template
        rule = suggested_rule(key)
        assert rule is not None, key
        rules.append(
            Rule(number, rule["match_type"], rule["match_string"], None, None, 100, "Log_only",
                 "Log_only", "NETO")
        )  # fmt: skip
    ruleset = compile_rules(rules)
    assert ruleset.errors == []
    for number, messages in enumerate(GROUPS, start=1):
        for message in messages:
            matched = ruleset.match(message, None, None)
            assert matched is not None and matched.id == number, message
    assert ruleset.match("BGP neighbor 10.0.1.1 Up", None, None) is None


def test_suggested_rules_are_safe() -> None:
    assert suggested_rule("linkdown") == {"match_type": "contains", "match_string": "linkdown"}
    # Mostly masks: a rule would match nearly anything, so none is offered.
    assert suggested_rule("<n> <ip>") is None
    assert suggested_rule("<n> a <hex>") is None
    # Regex metacharacters of the message are literal in the rule.
    rule = suggested_rule("a.b* (c) [d] x|y ^$ <n>")
    assert rule is not None and rule["match_type"] == "regex"
    ruleset = compile_rules(
        [Rule(1, "regex", rule["match_string"], None, None, 1, "Log_only", "Log_only", "N")]
    )
    assert ruleset.match("a.b*   (c) [d] x|y ^$ 42", None, None) is not None
    assert ruleset.match("aXb* (c) [d] x|y ^$ 42", None, None) is None
    # Too long for a regex rule: no suggestion rather than one the engine refuses.
    assert suggested_rule("word " * 300 + "<n>") is None


@pytest.fixture(params=["postgresql", "sqlite"])
def audit(request, tmp_path) -> Engine:  # type: ignore[no-untyped-def]
    """A migrated database of either kind (the engine fixture's, or a new SQLite file)."""
    if request.param == "postgresql":
        return request.getfixturevalue("engine")
    from mutt_app.config import load_settings
    from mutt_app.db.engine import make_engine, upgrade

    engine = make_engine(load_settings({"MUTT_DATA_DIR": str(tmp_path)}))
    upgrade(engine)
    request.addfinalizer(engine.dispose)
    return engine


def test_templates_group_count_and_bound_the_window(
    audit: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    rows = []
    for n, message in enumerate(GROUPS[0]):
        rows.append((f"edge-{n % 2}", message, NOW - timedelta(minutes=n + 1), None))
    rows.append(("edge-9", GROUPS[1][0], NOW - timedelta(minutes=5), None))
    rows.append(("edge-0", GROUPS[0][0], NOW - timedelta(hours=3), None))  # outside 2 hours
    rows.append(("edge-0", GROUPS[0][0], NOW - timedelta(minutes=1), 7))  # a rule matched it
    with session_factory(audit).begin() as session:
        _rows(session, rows)
    with session_factory(audit)() as session:
        answer = unhandled_templates(session, hours=2, max_rows=100, limit=10, now=NOW)
    assert (answer["scanned"], answer["truncated"]) == (4, False)
    first, second = answer["templates"]
    assert first["template"] == template(GROUPS[0][0])
    assert (first["events"], first["hosts"]) == (3, 2)
    assert first["top_hosts"] == [
        {"hostname": "edge-0", "events": 2},
        {"hostname": "edge-1", "events": 1},
    ]
    assert first["example"] == GROUPS[0][0]  # the newest
    assert datetime.fromisoformat(first["last_seen"]) == NOW - timedelta(minutes=1)
    assert datetime.fromisoformat(first["first_seen"]) == NOW - timedelta(minutes=3)
    assert first["suggested_rule"]["team_assignment"] == "NETO"
    assert (second["events"], second["hosts"]) == (1, 1)

    # The cap: only the newest max_rows are read, and the answer (and the log) says so.
    caplog.set_level(logging.INFO, logger="mutt_app.watch.unhandled")
    with session_factory(audit)() as session:
        capped = unhandled_templates(session, hours=2, max_rows=2, limit=10, now=NOW)
    assert (capped["scanned"], capped["truncated"]) == (2, True)
    assert [t["events"] for t in capped["templates"]] == [2]
    assert "counting the newest 2 only" in caplog.text


def test_the_query_reads_the_unmatched_index_of_the_windows_partition(engine: Engine) -> None:
    ensure_partitions(engine, date(2026, 11, 1), 1, drain_default=False)
    with Session(engine) as session:
        session.execute(text("SET enable_seqscan = off"))  # a tiny table: show the index serves
        plan = "\n".join(
            session.execute(
                text(
                    "EXPLAIN SELECT hostname, message FROM event_audit_log"
                    " WHERE matched_rule_id IS NULL AND event_timestamp > :start"
                    " AND event_timestamp <= :end ORDER BY event_timestamp DESC LIMIT 100"
                ),
                {"start": NOW - timedelta(hours=24), "end": NOW},
            ).scalars()
        )
    # Pruned to December's partition, read through its partial index: in order (no sort), and no
    # filter on matched_rule_id (the index holds unmatched rows only).
    assert "Index Scan using event_audit_log_202612_" in plan, plan
    assert "event_audit_log_202611" not in plan and "event_audit_log_default" not in plan, plan
    assert "Sort" not in plan and "matched_rule_id" not in plan, plan


def test_the_api_answers_templates_and_checks_its_parameters(
    api_client: FlaskClient,
    engine: Engine,
) -> None:
    now = datetime.now(UTC)
    with session_factory(engine).begin() as session:
        _rows(
            session,
            [(f"h{n}", m, now - timedelta(minutes=n), None) for n, m in enumerate(GROUPS[2])],
        )
    answer = call(api_client, "GET", "/api/v2/unhandled/templates?hours=1&limit=5", status=200)
    assert answer["hours"] == 1 and answer["truncated"] is False
    (group,) = answer["templates"]
    assert group["template"] == template(GROUPS[2][0]) and group["events"] == 2
    assert group["suggested_rule"]["match_type"] == "regex"
    default = call(api_client, "GET", "/api/v2/unhandled/templates", status=200)
    assert default["hours"] == 24  # UNHANDLED_TEMPLATES_HOURS
    for bad in ("hours=0", "hours=169", "hours=x", "limit=501"):
        assert call(api_client, "GET", f"/api/v2/unhandled/templates?{bad}", status=400)["error"]


def test_the_dashboard_answer_has_the_templates(
    settings: Settings, engine: Engine, redis_client: redis.Redis
) -> None:
    now = datetime.now(UTC)
    with session_factory(engine).begin() as session:
        _rows(session, [("h1", m, now - timedelta(minutes=1), None) for m in GROUPS[1]])
    body = collect(session_factory(engine), redis_client, settings, now=now)
    assert body["errors"] == []
    templates = body["unhandled_templates"]
    assert templates["hours"] == settings.unhandled_templates_hours
    assert [(t["template"], t["events"]) for t in templates["templates"]] == [
        (template(GROUPS[1][0]), 2)
    ]
