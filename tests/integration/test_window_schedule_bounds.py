"""Schedules that never occur, on real PostgreSQL and Redis: a rule is checked with its real
INTERVAL (422 naming why), and listing windows whose rules were stored unchecked walks each once
per window version, within its bound (counted in ``mutt_schedule_walks_stopped_total``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
