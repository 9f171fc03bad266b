"""Maintenance windows: occurrences (one-off, RRULE in a time zone across DST), scope, validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil import rrule as rr

from mutt_app.holdback.windows import Schedule, Scope, WindowError, validate


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_one_off_window_is_open_from_start_until_end() -> None:
    schedule = Schedule(_utc(2026, 3, 1, 10), ends_at=_utc(2026, 3, 1, 12))
    assert schedule.occurrence_at(_utc(2026, 3, 1, 9, 59)) is None
    open_ = schedule.occurrence_at(_utc(2026, 3, 1, 10))
    assert open_ is not None and open_.end == _utc(2026, 3, 1, 12)
    assert schedule.occurrence_at(_utc(2026, 3, 1, 11, 59)) == open_
    assert schedule.occurrence_at(_utc(2026, 3, 1, 12)) is None  # the end is not inside
    assert schedule.occurrences(_utc(2026, 3, 2), 3) == []


def test_weekly_rrule_keeps_wall_clock_time_across_dst_in_its_time_zone() -> None:
    # 02:00 Europe/Berlin every Sunday: 01:00 UTC in winter (CET), 00:00 UTC in summer (CEST).
    # 2026-03-29 is the spring-forward Sunday, 2026-10-25 the fall-back one.
    schedule = Schedule(
        datetime(2026, 3, 15, 1, 0, tzinfo=UTC),  # 02:00 CET
        rrule="FREQ=WEEKLY;BYDAY=SU",
        duration_minutes=60,
        timezone="Europe/Berlin",
    )
    starts = [o.start for o in schedule.occurrences(_utc(2026, 3, 15), 3)]
    # 03-29 02:00 does not exist in Berlin (clocks jump 02:00 -> 03:00): moved on by the gap,
    # to 03:00 CEST = 01:00 UTC.
    assert starts == [_utc(2026, 3, 15, 1), _utc(2026, 3, 22, 1), _utc(2026, 3, 29, 1)]
    summer = schedule.occurrences(_utc(2026, 4, 1), 1)[0]
    assert summer.start == _utc(2026, 4, 5, 0)  # 02:00 CEST
    assert summer.end - summer.start == timedelta(hours=1)
    autumn = [o.start for o in schedule.occurrences(_utc(2026, 10, 17), 3)]
    # 10-25 02:00 happens twice in Berlin (03:00 CEST falls back to 02:00 CET): the first one,
    # still CEST, = 00:00 UTC; from the next Sunday on it is CET again.
    assert autumn == [_utc(2026, 10, 18, 0), _utc(2026, 10, 25, 0), _utc(2026, 11, 1, 1)]
    # open exactly inside the summer occurrence, closed an hour later
    assert schedule.occurrence_at(_utc(2026, 4, 5, 0, 30)) == summer
    assert schedule.occurrence_at(_utc(2026, 4, 5, 1, 0)) is None


def test_rrule_count_ends_the_series_and_end_now_cuts_only_the_open_occurrence() -> None:
    schedule = Schedule(
        _utc(2026, 1, 1, 22),
        rrule="RRULE:FREQ=DAILY;COUNT=3",
        duration_minutes=120,
        timezone="UTC",
        ended_at=_utc(2026, 1, 2, 22, 30),
    )
    occurrences = schedule.occurrences(_utc(2026, 1, 1), 10)
    assert [(o.start, o.end) for o in occurrences] == [
        (_utc(2026, 1, 1, 22), _utc(2026, 1, 2, 0)),
        (_utc(2026, 1, 2, 22), _utc(2026, 1, 2, 22, 30)),  # ended early
        (_utc(2026, 1, 3, 22), _utc(2026, 1, 4, 0)),
    ]
    assert schedule.occurrence_at(_utc(2026, 1, 2, 22, 45)) is None
    assert schedule.occurrence_at(_utc(2026, 1, 5)) is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rrule": "FREQ=SOMETIMES", "duration_minutes": 5}, "rrule: not a valid RFC 5545 RRULE"),
        ({"rrule": "FREQ=MINUTELY", "duration_minutes": 5}, "at most hourly"),
        ({"rrule": "DTSTART:20260101T000000\nRRULE:FREQ=DAILY", "duration_minutes": 5}, "rrule"),
        ({"rrule": "FREQ=DAILY"}, "duration_minutes: a recurring window needs a duration"),
        # dateutil would search until the year 9999 for these: refused at once instead
        (
            {"rrule": "FREQ=HOURLY;BYMONTH=2;BYMONTHDAY=30", "duration_minutes": 5},
            "rrule: its BY parts allow no date at all",
        ),
        (
            {"rrule": "FREQ=HOURLY;BYMINUTE=0;BYSETPOS=2", "duration_minutes": 5},
            "rrule: BYSETPOS only with FREQ=MONTHLY or FREQ=YEARLY",
        ),
        (
            {"rrule": "FREQ=DAILY", "duration_minutes": 5, "timezone": "Mars/Olympus_Mons"},
            "timezone: unknown IANA time zone 'Mars/Olympus_Mons'",
        ),
        ({"ends_at": _utc(2026, 1, 1, 9)}, "ends_at: must be after starts_at"),
        ({}, "ends_at: a one-off window needs ends_at or duration_minutes"),
        ({"duration_minutes": 60, "hosts": []}, "scope: a window needs at least one"),
        ({"duration_minutes": 60, "action": "mute"}, "action: one of suppress, downgrade"),
        (
            {
                "rrule": "FREQ=DAILY;UNTIL=20260201T000000",
                "duration_minutes": 5,
                "timezone": "Europe/Berlin",
            },
            "UNTIL values must be specified in UTC",
        ),
    ],
)
def test_validation_names_what_is_wrong(fields: dict, message: str) -> None:
    base = {
        "name": "core upgrade",
        "starts_at": _utc(2026, 1, 1, 10),
        "hosts": ["core-*"],
        "action": "suppress",
    }
    with pytest.raises(WindowError, match=message.replace("(", r"\(")):
        validate({**base, **fields})


def test_validation_turns_a_one_off_duration_into_its_end() -> None:
    stored = validate(
        {
            "name": " nightly ",
            "starts_at": datetime.fromisoformat("2026-01-01T10:00:00+01:00"),
            "duration_minutes": 90,
            "teams": ["network"],
            "oid_prefixes": [".1.3.6.1.4.1.9"],
            "action": "downgrade",
        }
    )
    assert stored["name"] == "nightly"
    assert stored["starts_at"] == _utc(2026, 1, 1, 9)
    assert stored["ends_at"] == _utc(2026, 1, 1, 10, 30)
    assert stored["duration_minutes"] is None
    assert stored["oid_prefixes"] == ["1.3.6.1.4.1.9"]
    assert stored["summary_alert"] is True


def test_scope_parts_must_all_match_and_an_empty_part_means_any() -> None:
    scope = Scope.of(hosts=["core-sw-*", "edge-01"], teams=["network"])
    assert scope.matches("CORE-SW-07", "network", 3, None)  # globs ignore case, as DNS does
    assert scope.matches("edge-01", "network", None, None)
    assert not scope.matches("edge-011", "network", None, None)
    assert not scope.matches("core-sw-07", "database", 3, None)  # team differs
    rules = Scope.of(rule_ids=[7])
    assert rules.matches("any-host", "any-team", 7, None)
    assert not rules.matches("any-host", "any-team", 8, None)
    assert not rules.matches("any-host", "any-team", None, None)  # an unmatched event has no rule


def test_oid_prefix_scope_ignores_a_leading_dot_and_needs_an_oid() -> None:
    scope = Scope.of(oid_prefixes=[".1.3.6.1.4.1.9."])
    assert scope.matches("h", "t", 1, "1.3.6.1.4.1.9.9.41")
    assert scope.matches("h", "t", 1, ".1.3.6.1.4.1.9.9.41")
    assert not scope.matches("h", "t", 1, "1.3.6.1.4.1.2636.1")
    assert not scope.matches("h", "t", 1, None)


def test_an_empty_scope_matches_nothing() -> None:
    assert Scope.of().empty
    assert not Scope.of().matches("h", "t", 1, "1.3")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rrule": "FREQ=WEEKLY;BYDAY=SU", "duration_minutes": 90, "timezone": "Europe/Berlin"},
        {"rrule": "FREQ=HOURLY;BYHOUR=1,2,3", "duration_minutes": 20, "timezone": "America/New_York",
         "ended_at": _utc(2026, 3, 8, 7, 10)},
        {"rrule": "FREQ=DAILY;COUNT=40", "duration_minutes": 2000, "timezone": "UTC"},  # overlapping
        {"ends_at": _utc(2026, 3, 20)},
    ],
)  # fmt: skip
def test_the_walk_from_where_it_stopped_answers_as_a_fresh_look(kwargs: dict) -> None:
    """occurrence_at goes on from its last position as time moves on; every answer, across DST
    changes, early ends and overlaps, is the one a schedule asked for the first time gives."""
    walking = Schedule(_utc(2026, 3, 1, 1), **kwargs)
    moment = _utc(2026, 2, 28)
    while moment < _utc(2026, 4, 15):
        fresh = Schedule(_utc(2026, 3, 1, 1), **kwargs).occurrences(moment, 1)
        expected = fresh[0] if fresh and fresh[0].start <= moment else None
        assert walking.occurrence_at(moment) == expected, moment
        moment += timedelta(minutes=37)
    # A clock that goes back gets a fresh look too.
    back = _utc(2026, 3, 8, 6, 5)
    fresh = Schedule(_utc(2026, 3, 1, 1), **kwargs).occurrences(back, 1)
    assert walking.occurrence_at(back) == (fresh[0] if fresh and fresh[0].start <= back else None)


@pytest.mark.parametrize(
    "text",
    [
        "FREQ=WEEKLY;INTERVAL=3;BYDAY=TU,FR;WKST=SU",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,SU",
        "FREQ=HOURLY;INTERVAL=5;BYHOUR=1,2,3,7",
        "FREQ=DAILY;INTERVAL=3;BYDAY=MO,WE",
        "FREQ=YEARLY;INTERVAL=3;BYMONTH=3;BYDAY=-1SU",
        "FREQ=MONTHLY;INTERVAL=5;BYMONTHDAY=31",
        "FREQ=MONTHLY;INTERVAL=2;BYDAY=MO;BYSETPOS=-1;COUNT=3",
    ],
)
def test_a_rule_with_an_interval_walks_the_dates_dateutil_gives(text: str) -> None:
    start = datetime(2026, 12, 7, 2, tzinfo=UTC)
    schedule = Schedule(start, rrule=text, duration_minutes=5, timezone="Europe/Berlin")
    expected = list(rr.rrulestr(text, dtstart=start.astimezone(ZoneInfo("Europe/Berlin")))[:20])
    got = [o.start for o in schedule.occurrences(start - timedelta(days=1), 20)]
    assert got == [moment.astimezone(UTC) for moment in expected]
