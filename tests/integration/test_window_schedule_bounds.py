"""Schedules that never occur, on real PostgreSQL and Redis: a rule is checked with its real
INTERVAL (422 naming why), and listing windows whose rules were stored unchecked walks each once
per window version, within its bound (counted in ``mutt_schedule_walks_stopped_total``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from mutt_app import metrics
from mutt_app.db.models import MaintenanceWindow
from mutt_app.holdback import schedule
from tests.records import audit_rows
from tests.web import call

WINDOWS = "/api/v2/maintenance-windows"
# Every seventh day from a Monday is a Monday: a Tuesday is never reached.
NEVER_WEEKLY = "FREQ=DAILY;INTERVAL=7;BYDAY=TU"


def _next_monday() -> datetime:
    today = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    return today + timedelta(days=7 - today.weekday())


def _stopped() -> float:
    return metrics.SCHEDULE_WALKS_STOPPED._value.get()


def test_a_never_occurring_weekly_rule_is_refused_naming_why(
    api_client: FlaskClient, engine: Engine
) -> None:
    body = {
        "name": "tuesdays, from a monday",
        "starts_at": _next_monday().isoformat(),
        "rrule": NEVER_WEEKLY,
        "duration_minutes": 60,
        "hosts": ["core-sw-*"],
        "action": "suppress",
    }
    before = _stopped()
    refused = call(api_client, "POST", WINDOWS, body, status=422)
    assert "INTERVAL=7 passes over all of them" in refused["error"], refused
    assert f"within {schedule.MAX_SKIPPED_DATES} dates" in refused["error"]
    assert _stopped() == before + 1
    # An every-four-years leap day from a year that is not a leap year: never.
    leap = {**body, "name": "leap", "starts_at": "2026-01-05T02:00:00+00:00",
            "rrule": "FREQ=YEARLY;INTERVAL=4;BYMONTH=2;BYMONTHDAY=29"}  # fmt: skip
    refused = call(api_client, "POST", WINDOWS, leap, status=422)
    assert refused["error"].startswith("rrule: never occurs"), refused
    # The same rule on the day its start reaches is a window.
    fine = call(api_client, "POST", WINDOWS, {**body, "rrule": "FREQ=DAILY;INTERVAL=7;BYDAY=MO"},
                status=201)  # fmt: skip
    assert fine["maintenance_window"]["next_occurrences"][0]["start"].startswith(
        _next_monday().date().isoformat()
    )
    assert len(audit_rows(engine, table_name="maintenance_windows")) == 1


def test_listing_windows_walks_a_stalled_rule_once_per_version(
    api_client: FlaskClient, engine: Engine
) -> None:
    # Four windows stored before rules were checked with their INTERVAL.
    with Session(engine) as session, session.begin():
        for n in range(4):
            session.add(MaintenanceWindow(
                name=f"never {n}", starts_at=_next_monday(), rrule=NEVER_WEEKLY,
                duration_minutes=60, timezone="UTC", hosts=[f"h{n}"], teams=[], rule_ids=[],
                oid_prefixes=[], action="suppress", summary_alert=True,
            ))  # fmt: skip
    before = _stopped()
    listed = call(api_client, "GET", WINDOWS, status=200)["maintenance_windows"]
    assert len(listed) == 4
    for window in listed:
        assert window["active"] is False and window["next_occurrences"] == []
        assert "INTERVAL=7 passes over all of them" in window["error"]
    assert _stopped() == before + 4  # each walk stopped at its bound, once
    for _ in range(3):  # later requests walk nothing again
        again = call(api_client, "GET", WINDOWS, status=200)["maintenance_windows"]
        assert [w["error"] for w in again] == [w["error"] for w in listed]
    one = call(api_client, "GET", f"{WINDOWS}/{listed[0]['id']}")["maintenance_window"]
    assert one["error"] == listed[0]["error"]
    assert _stopped() == before + 4


# An hourly rule from 2000 walks hundreds of thousands of dates to reach now: past a deadline
# made short here.
FROM_LONG_AGO = datetime(2000, 1, 3, 2, 0, tzinfo=UTC)
SHORT_WALK_SECONDS = 0.05


def test_a_rule_whose_walk_to_now_passes_the_time_bound_is_refused_naming_why(
    api_client: FlaskClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schedule, "MAX_WALK_SECONDS", SHORT_WALK_SECONDS)
    body = {
        "name": "hourly since 2000",
        "starts_at": FROM_LONG_AGO.isoformat(),
        "rrule": "FREQ=HOURLY",
        "duration_minutes": 10,
        "hosts": ["core-sw-*"],
        "action": "suppress",
    }
    before = _stopped()
    refused = call(api_client, "POST", WINDOWS, body, status=422)
    assert "took longer than 0.05 s (MAX_WALK_SECONDS)" in refused["error"], refused
    assert "move starts_at closer" in refused["error"]
    assert _stopped() == before + 1
    assert audit_rows(engine, table_name="maintenance_windows") == []
    # The same rule from this week is a window: its occurrences are the same from now on.
    recent = {**body, "starts_at": _next_monday().isoformat()}
    assert call(api_client, "POST", WINDOWS, recent, status=201)["maintenance_window"]["id"]


def test_a_stored_window_whose_walk_passes_the_time_bound_is_listed_with_why_once(
    api_client: FlaskClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Session(engine) as session, session.begin():
        session.add(MaintenanceWindow(
            name="hourly since 2000", starts_at=FROM_LONG_AGO, rrule="FREQ=HOURLY",
            duration_minutes=10, timezone="UTC", hosts=["h"], teams=[], rule_ids=[],
            oid_prefixes=[], action="suppress", summary_alert=True,
        ))  # fmt: skip
    monkeypatch.setattr(schedule, "MAX_WALK_SECONDS", SHORT_WALK_SECONDS)
    before = _stopped()
    [listed] = call(api_client, "GET", WINDOWS, status=200)["maintenance_windows"]
    assert listed["active"] is False and listed["next_occurrences"] == []
    assert "MAX_WALK_SECONDS" in listed["error"]
    assert _stopped() == before + 1
    for _ in range(3):  # the stopped walk is kept with its window's version: not walked again
        [again] = call(api_client, "GET", WINDOWS, status=200)["maintenance_windows"]
        assert again["error"] == listed["error"]
    assert _stopped() == before + 1


def test_listing_windows_walks_a_long_rule_once_per_occurrence_not_per_request(
    api_client: FlaskClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Session(engine) as session, session.begin():
        session.add(MaintenanceWindow(
            name="hourly since 2000", starts_at=FROM_LONG_AGO, rrule="FREQ=HOURLY",
            duration_minutes=10, timezone="UTC", hosts=["h"], teams=[], rule_ids=[],
            oid_prefixes=[], action="suppress", summary_alert=True,
        ))  # fmt: skip
    # The first walk must finish, however busy the machine (the shipped limit is a wall-clock one,
    # which a loaded CI machine once passed): this test is about the walks that follow it.
    monkeypatch.setattr(schedule, "MAX_WALK_SECONDS", 60.0)
    [listed] = call(api_client, "GET", WINDOWS, status=200)["maintenance_windows"]
    assert "error" not in listed and len(listed["next_occurrences"]) == 3
    # From now on a listing is answered from the kept schedule: a rule that can no longer be
    # walked at all (no time for a single date) is still listed, the same, until its next
    # occurrence ends.
    kept = listed["next_occurrences"]
    walks = _stopped()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(schedule, "MAX_WALK_SECONDS", -1.0)
        for _ in range(3):
            [again] = call(api_client, "GET", WINDOWS, status=200)["maintenance_windows"]
            assert again["next_occurrences"] == kept and "error" not in again
    assert _stopped() == walks
