"""The heartbeats REST API on a real PostgreSQL and Redis: validation, one audit row per change
(through the audited-change service, reason required), and the quiet hosts listed first."""

from __future__ import annotations

import time

import redis
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from mutt_app.cli import main
from mutt_app.config import Settings
from mutt_app.runtime import Runtime
from mutt_app.watch import heartbeats
from tests.records import audit_rows, rules_version
from tests.web import call

DB = {"name": "databases", "host": "db-*", "interval_minutes": 5}


def test_create_list_update_delete_each_audited_once(
    api_client: FlaskClient,
    engine: Engine,
    redis_client: redis.Redis,
) -> None:
    created = call(api_client, "POST", "/api/v2/heartbeats", DB, status=201)
    hb = created["heartbeat"]
    assert (hb["host"], hb["team"], hb["handling"], hb["is_active"]) == (
        "db-*",
        None,
        "Ticket_only",
        True,
    )
    assert created["changed"] is True and rules_version(redis_client) == 1
    team = {
        "name": " edges ",
        "team": "NETO",
        "interval_minutes": 10,
        "handling": "Page_and_ticket",
    }
    edges = call(api_client, "POST", "/api/v2/heartbeats", team, status=201)
    assert edges["heartbeat"]["name"] == "edges"

    call(api_client, "POST", "/api/v2/heartbeats", DB, status=409)  # the name is taken
    for bad in (
        {"name": "x", "interval_minutes": 5},  # neither host nor team
        {"name": "x", "host": "h", "team": "NETO", "interval_minutes": 5},  # both
        {"name": "x", "host": "h", "interval_minutes": 0},
        {"name": "x", "host": "h", "interval_minutes": 10_081},
        {"name": "x", "host": "h", "interval_minutes": 5, "handling": "Suppress"},
        {"name": "x", "host": " ", "interval_minutes": 5},
        {"name": "x", "host": "h", "interval_minutes": 5, "id": 7},  # read-only
        {"name": "x", "host": "h"},  # no interval
    ):
        call(api_client, "POST", "/api/v2/heartbeats", bad, status=422)
    call(api_client, "POST", "/api/v2/heartbeats", {**DB, "name": "y"}, reason=None, status=422)

    path = f"/api/v2/heartbeats/{created['id']}"
    updated = call(api_client, "PUT", path, {"interval_minutes": 15}, reason="slower", status=200)
    assert updated["heartbeat"]["interval_minutes"] == 15 and updated["changed"] is True
    assert call(api_client, "PUT", path, {"interval_minutes": 15}, status=200)["changed"] is False
    call(api_client, "PUT", path, {"team": "NETO"}, status=422)  # host and team
    moved = call(api_client, "PUT", path, {"host": None, "team": "DBA"}, status=200)
    assert (moved["heartbeat"]["host"], moved["heartbeat"]["team"]) == (None, "DBA")
    call(api_client, "PUT", path, {}, status=422)
    call(api_client, "PUT", "/api/v2/heartbeats/999", {"interval_minutes": 5}, status=404)
    call(api_client, "PUT", path, {"name": "edges"}, status=409)

    deleted = call(api_client, "DELETE", path, {}, reason="decommissioned", status=200)
    assert deleted["deleted"]["id"] == created["id"]
    call(api_client, "DELETE", path, {}, status=404)

    rows = audit_rows(engine, table_name="heartbeats")
    assert [r.operation for r in rows] == ["CREATE", "CREATE", "UPDATE", "UPDATE", "DELETE"]
    assert rows[0].new_values == hb and rows[0].changed_by == "api-key"
    assert (rows[2].old_values["interval_minutes"], rows[2].new_values["interval_minutes"]) == (
        5,
        15,
    )
    assert rows[2].reason == "slower"
    assert rows[4].reason == "decommissioned" and rows[4].new_values is None


def test_the_list_shows_heartbeats_with_quiet_hosts_first(
    api_client: FlaskClient,
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    for name in ("a", "b", "c"):
        call(api_client, "POST", "/api/v2/heartbeats", {**DB, "name": name, "host": f"{name}-*"})
    redis_client.set(heartbeats.SINCE_KEY, int((time.time() - 3600) * 1000))
    redis_client.zadd(heartbeats.LAST_SEEN_KEY, {"b-1": (time.time() - 600) * 1000})
    runtime = Runtime(settings)
    assert heartbeats.check(runtime, lambda alerts: None).raised == ["2:b-1"]

    listed = call(api_client, "GET", "/api/v2/heartbeats", status=200)
    assert [h["name"] for h in listed["heartbeats"]] == ["b", "a", "c"]
    (quiet,) = listed["heartbeats"][0]["quiet_hosts"]
    assert (quiet["host"], quiet["heartbeat"]) == ("b-1", "b")
    only = call(api_client, "GET", "/api/v2/heartbeats?quiet=true", status=200)
    assert [h["name"] for h in only["heartbeats"]] == ["b"] and only["total"] == 1
    page = call(api_client, "GET", "/api/v2/heartbeats?limit=1&offset=1", status=200)
    assert [h["name"] for h in page["heartbeats"]] == ["a"] and page["total"] == 3


def test_the_cli_adds_lists_and_removes_heartbeats_through_the_audited_service(
    settings: Settings, engine: Engine, redis_client: redis.Redis
) -> None:
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}

    def mutt(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, list(args), env=env)
        return result.exit_code, result.output

    code, out = mutt(
        "heartbeats", "add", "edges", "--team", "NETO", "--every", "10", "--reason", "r"
    )
    assert code == 0 and "heartbeat 'edges' added" in out, out
    assert mutt("heartbeats", "add", "x", "--every", "5", "--reason", "r")[0] == 2
    code, out = mutt("heartbeats", "add", "edges", "--host", "h", "--every", "5", "--reason", "r")
    assert (code, out) == (1, "Error: a heartbeat named 'edges' already exists\n")
    assert mutt("heartbeats", "add", "y", "--host", "h", "--every", "5")[0] == 2  # no reason
    assert mutt("heartbeats", "add", " ", "--host", "h", "--every", "5", "--reason", "r") == (
        1,
        "Error: the name must not be blank\n",
    )

    redis_client.set(heartbeats.SINCE_KEY, int((time.time() - 3600) * 1000))
    with engine.begin() as conn:  # the heartbeat changed an hour ago; edge-9 never talked
        conn.execute(text("UPDATE heartbeats SET updated_at = now() - interval '1 hour'"))
        conn.execute(
            text("INSERT INTO device_teams (hostname, team_assignment) VALUES ('edge-9', 'NETO')")
        )
    heartbeats.check(Runtime(settings), lambda alerts: None)
    code, out = mutt("heartbeats", "list")
    assert code == 0 and "edges" in out and "team NETO" in out
    assert "QUIET edge-9 (edges): last event never" in out, out

    assert mutt("heartbeats", "remove", "edges", "--reason", "gone")[0] == 0
    assert mutt("heartbeats", "remove", "edges", "--reason", "gone")[0] == 1
    rows = audit_rows(engine, table_name="heartbeats")
    assert [(r.operation, r.reason) for r in rows] == [("CREATE", "r"), ("DELETE", "gone")]
    assert rows[0].changed_by.startswith("cli:") and rules_version(redis_client) == 2
