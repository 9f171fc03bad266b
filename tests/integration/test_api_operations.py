"""REST API v2 for operators on real PostgreSQL and Redis: the dead-letter queue, dynamic config."""

from __future__ import annotations

import redis
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from mutt_app.cli import main
from mutt_app.dynamic_config import PREFIX
from mutt_app.forwarding.deadletters import add_dead_letter
from tests.records import audit_rows
from tests.web import AUTH, call

ALERT = {"external_id": "6c442ed1-19ae-4c1b-9ecf-a3d7efc6d89a", "signature": "router-01::x"}


def _dead_letters(engine: Engine) -> tuple[int, int]:
    with Session(engine) as session, session.begin():
        good = add_dead_letter(
            session,
            task_name="mutt.forward_to_moog",
            queue="mutt.forward",
            payload={"alert": ALERT},
            error="Moog answered 400",
            backoff_base=60,
        )
        bad = add_dead_letter(
            session,
            task_name="mutt.forward_to_moog",
            queue="mutt.forward",
            payload={"nothing": "usable"},
            error="?",
            backoff_base=60,
        )
        session.flush()
        return good.id, bad.id


def test_dlq_lists_and_replays_an_item_and_refuses_what_cannot_be_replayed(
    api_client: FlaskClient,
    engine: Engine,
    redis_client: redis.Redis,
) -> None:
    good, bad = _dead_letters(engine)
    listed = call(api_client, "GET", "/api/v2/dlq", status=200)
    assert listed["total"] == 2 and [i["id"] for i in listed["items"]] == [good, bad]
    assert call(api_client, "GET", "/api/v2/dlq?poison=true", status=200)["total"] == 0

    answer = call(api_client, "POST", f"/api/v2/dlq/{good}/replay", {}, status=200)
    assert answer == {"replayed": good, "task": "mutt.forward_to_moog", "queue": "mutt.forward"}
    assert redis_client.llen("mutt.forward") == 1  # published again
    call(api_client, "POST", f"/api/v2/dlq/{bad}/replay", {}, status=422)
    call(api_client, "POST", "/api/v2/dlq/999999/replay", {}, status=404)
    assert [i["id"] for i in call(api_client, "GET", "/api/v2/dlq")["items"]] == [bad]
    assert api_client.get("/api/v2/dlq").status_code == 401  # no key


def test_a_replay_needs_a_reason_and_leaves_an_audit_row(
    api_client: FlaskClient,
    engine: Engine,
    redis_client: redis.Redis,
) -> None:
    good, _ = _dead_letters(engine)
    for path in (f"/api/v2/dlq/{good}/replay", f"/api/v2/dlq/{good}/replay?poison=1"):
        refused = call(api_client, "POST", path, {}, reason=None, status=422)
        assert refused["details"] == {"missing_fields": ["reason"]}
    assert audit_rows(engine) == [] and redis_client.llen("mutt.forward") == 0  # nothing done

    headers = {"X-Correlation-ID": "0b7e3f2a-55c1-4d8e-9a61-2f9c0c3c1a10"}
    path = f"/api/v2/dlq/{good}/replay"
    call(api_client, "POST", path, {}, reason="Moog fixed its parser", headers=headers, status=200)
    assert redis_client.llen("mutt.forward") == 1
    (row,) = audit_rows(engine)
    assert (row.operation, row.table_name, row.record_id) == ("DELETE", "dead_letters", good)
    assert row.reason == "Moog fixed its parser" and row.changed_by.startswith("api")
    assert str(row.correlation_id) == headers["X-Correlation-ID"]
    assert row.old_values["payload"] == {"alert": ALERT}  # what was pushed back, kept
    assert row.new_values == {
        "replayed": True,
        "task": "mutt.forward_to_moog",
        "queue": "mutt.forward",
    }
    # The reason may come as a header too, as for every other change.
    second, _ = _dead_letters(engine)
    response = api_client.post(
        f"/api/v2/dlq/{second}/replay",
        headers={**AUTH, "X-Change-Reason": "by header"},
    )
    assert response.status_code == 200, response.json
    assert audit_rows(engine)[-1].reason == "by header"


def test_the_cli_replays_and_purges_only_with_a_reason_each_item_audited(
    pg_url: str, redis_url: str, engine: Engine, redis_client: redis.Redis
) -> None:
    good, bad = _dead_letters(engine)
    env = {"DATABASE_URL": pg_url, "REDIS_URL": redis_url}
    runner = CliRunner()
    refused = runner.invoke(main, ["dlq", "replay", str(good)], env=env)
    assert refused.exit_code == 2 and "--reason" in refused.output
    assert audit_rows(engine) == []

    replay = ["dlq", "replay", "--all", "--reason", "Moog is back"]
    result = runner.invoke(main, replay, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "replayed 1, skipped 1" in result.output  # the unusable payload stays
    assert redis_client.llen("mutt.forward") == 1
    purge = ["dlq", "purge", str(bad), "--yes", "--reason", "junk"]
    assert runner.invoke(main, purge, env=env, catch_exceptions=False).exit_code == 0
    rows = audit_rows(engine)
    assert [(r.record_id, r.reason, r.new_values is None) for r in rows] == [
        (good, "Moog is back", False),
        (bad, "junk", True),
    ]
    assert all(r.changed_by.startswith("cli:") for r in rows)


def test_config_put_changes_values_and_audits_once(
    api_client: FlaskClient,
    engine: Engine,
    redis_client: redis.Redis,
) -> None:
    config = call(api_client, "GET", "/api/v2/config", status=200)["config"]
    assert config["moog_rate_limit"]["overridden"] is False
    default = config["moog_rate_limit"]["value"]

    answer = call(api_client, "PUT", "/api/v2/config", {"moog_rate_limit": 7}, status=200)
    assert answer == {
        "old": {"moog_rate_limit": default},
        "new": {"moog_rate_limit": 7},
        "changed": True,
    }
    assert redis_client.get(f"{PREFIX}:moog_rate_limit") == b"7"
    rows = audit_rows(engine, table_name="dynamic_config")
    assert [(r.old_values, r.new_values, r.reason) for r in rows] == [
        ({"moog_rate_limit": default}, {"moog_rate_limit": 7}, "test change")
    ]
    assert call(api_client, "GET", "/api/v2/config")["config"]["moog_rate_limit"]["overridden"]


def test_config_put_refuses_bad_values_unknown_names_and_no_reason(
    api_client: FlaskClient,
    engine: Engine,
    redis_client: redis.Redis,
) -> None:
    bad = call(
        api_client,
        "PUT",
        "/api/v2/config",
        {"moog_rate_limit": 5, "moog_rate_period": -1},
        status=422,
    )
    assert "moog_rate_period" in bad["details"]
    assert redis_client.get(f"{PREFIX}:moog_rate_limit") is None  # all or none
    unknown = call(api_client, "PUT", "/api/v2/config", {"no_such_key": 1}, status=422)
    assert unknown["details"]["unknown"] == ["no_such_key"]
    call(api_client, "PUT", "/api/v2/config", {"moog_rate_limit": 5}, reason=None, status=422)
    call(api_client, "PUT", "/api/v2/config", {"moog_rate_limit": True}, status=422)
    assert audit_rows(engine, table_name="dynamic_config") == []


def test_config_put_audits_only_what_changes(
    api_client: FlaskClient,
    engine: Engine,
) -> None:
    call(api_client, "PUT", "/api/v2/config", {"moog_rate_limit": 7}, status=200)
    same = call(api_client, "PUT", "/api/v2/config", {"moog_rate_limit": 7}, status=200)
    assert same == {"old": {}, "new": {}, "changed": False}
    mixed = call(
        api_client,
        "PUT",
        "/api/v2/config",
        {"moog_rate_limit": 7, "alerter_defer_sleep_ms": 10},
        status=200,
    )
    assert mixed["new"] == {"alerter_defer_sleep_ms": 10} and mixed["old"] == {
        "alerter_defer_sleep_ms": 250
    }
    rows = audit_rows(engine, table_name="dynamic_config")
    assert [(r.old_values, r.new_values) for r in rows][1:] == [
        ({"alerter_defer_sleep_ms": 250}, {"alerter_defer_sleep_ms": 10})
    ]
    assert len(rows) == 2
