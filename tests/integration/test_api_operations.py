"""REST API v2 for operators on real PostgreSQL and Redis: the dead-letter queue, dynamic config."""

from __future__ import annotations

import redis
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from mutt_app.dynamic_config import PREFIX
from mutt_app.forwarding.deadletters import add_dead_letter
from tests.records import audit_rows
from tests.web import call

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

    answer = call(api_client, "POST", f"/api/v2/dlq/{good}/replay", status=200)
    assert answer == {"replayed": good, "task": "mutt.forward_to_moog", "queue": "mutt.forward"}
    assert redis_client.llen("mutt.forward") == 1  # published again
    call(api_client, "POST", f"/api/v2/dlq/{bad}/replay", status=422)
    call(api_client, "POST", "/api/v2/dlq/999999/replay", status=404)
    assert [i["id"] for i in call(api_client, "GET", "/api/v2/dlq")["items"]] == [bad]
    assert api_client.get("/api/v2/dlq").status_code == 401  # no key


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
