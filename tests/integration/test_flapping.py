"""Flap detection against a real Redis (and, through classify_batch, PostgreSQL)."""

from __future__ import annotations

import time

import orjson
import redis
from sqlalchemy import select

from mutt_app.classify.batch import classify_batch
from mutt_app.config import Settings
from mutt_app.db.models import AlertRule, EventAuditLog
from mutt_app.holdback import flapping
from mutt_app.holdback.flapping import FlapDetector, FlapVerdict, Transition
from mutt_app.runtime import Runtime, runtime_of
from tests.factories import wire_event

PREFIX = "mutt:flap"
PAIR = "core-sw-01:7"
ALERT = {
    "source": "core-sw-01",
    "severity": 4,
    "custom_info": {"handling": "Ticket_only", "team": "NETO", "flap_problem_rule_id": 7},
}

FORWARD, HOLD = FlapVerdict(False), FlapVerdict(True)


def _observe(
    detector: FlapDetector, batch: str, sides: str, *, n: int = 3, within: int = 60, quiet: int = 60
) -> list[FlapVerdict]:
    events = [Transition(PAIR, side == "p") for side in sides]
    return detector.observe(
        batch,
        events,
        {PAIR: orjson.dumps(ALERT)},
        transitions=n,
        within_seconds=within,
        quiet_seconds=quiet,
    )


def _state(client: redis.Redis) -> dict[str, str]:
    raw = client.hgetall(f"{PREFIX}:pair:{PAIR}")
    return {k.decode(): v.decode() for k, v in raw.items()}


def test_the_nth_transition_raises_once_and_holds_everything_after(
    redis_client: redis.Redis,
) -> None:
    detector = FlapDetector(redis_client, PREFIX, 600)
    # p c p c: three transitions; the third raises (and is held), the rest are held.
    verdicts = _observe(detector, "b1", "ppcpcpp")
    assert verdicts[:4] == [FORWARD] * 4  # the repeated p is no transition
    raised = verdicts[4]
    assert raised.held and raised.transitions == 3 and raised.raised
    assert verdicts[5:] == [HOLD, HOLD]
    state = _state(redis_client)
    assert (state["count"], state["flips"]) == ("3", "4")
    assert redis_client.pttl(f"{PREFIX}:pair:{PAIR}") == -1  # stays until its end is sent
    # Still flapping in the next batch: held, never raised again.
    assert _observe(detector, "b2", "cp") == [HOLD, HOLD]
    assert _state(redis_client)["flips"] == "6"


def test_transitions_older_than_the_window_do_not_count(redis_client: redis.Redis) -> None:
    detector = FlapDetector(redis_client, PREFIX, 600)
    assert _observe(detector, "b1", "pcp", within=1) == [FORWARD] * 3  # two transitions
    time.sleep(1.1)
    # With the old two, this batch's transitions would make the pair flap (n=3).
    assert _observe(detector, "b2", "cpc", within=1) == [FORWARD] * 3
    assert "id" not in _state(redis_client)


def test_a_redelivered_batch_gets_the_same_answer_and_counts_nothing_twice(
    redis_client: redis.Redis,
) -> None:
    detector = FlapDetector(redis_client, PREFIX, 600)
    first = _observe(detector, "b1", "pcpcp")
    again = _observe(detector, "b1", "pcpcp")
    assert first == again
    assert _state(redis_client)["count"] == "2"
    assert 0 < redis_client.ttl(f"{PREFIX}:memo:b1") <= 600


def test_a_quiet_episode_ends_once_and_the_pair_starts_afresh(redis_client: redis.Redis) -> None:
    detector = FlapDetector(redis_client, PREFIX, 600)
    verdicts = _observe(detector, "b1", "pcpcp", quiet=1)
    episode = verdicts[3].raised
    assert episode is not None
    assert detector.close_due() == 0  # not quiet long enough yet
    time.sleep(1.1)
    sent: list[dict] = []
    detector.flush(flapping.ended, sent.extend)
    assert detector.flush(flapping.ended, sent.extend) == []
    (end,) = sent
    info = end["custom_info"]
    assert (info["flapping"], info["flap_episode"]) == ("ended", episode)
    assert (info["flap_transitions"], info["flap_held"]) == (4, 2)
    assert end["severity"] == 0  # clears the flapping alert (same signature)
    assert end["signature"] == "core-sw-01::flapping::7"
    assert _state(redis_client) == {}
    # After the end, the pair's first event is no transition: forwarded.
    assert _observe(detector, "b2", "c", quiet=1) == [FORWARD]


def test_the_next_event_after_the_quiet_period_ends_the_episode_itself(
    redis_client: redis.Redis,
) -> None:
    detector = FlapDetector(redis_client, PREFIX, 600)
    _observe(detector, "b1", "pcpc", quiet=1)
    time.sleep(1.1)
    assert _observe(detector, "b2", "p", quiet=1) == [FORWARD]
    (end,) = detector.flush(flapping.ended, lambda alerts: None)
    assert end["custom_info"]["flap_held"] == 1


def _pair(runtime) -> int:  # type: ignore[no-untyped-def]
    with runtime.sessions.begin() as session:
        down = AlertRule(
            match_string="changed state to down",
            match_type="contains",
            prod_handling="Ticket_only",
            dev_handling="Log_only",
            team_assignment="NETO",
        )
        session.add(down)
        session.flush()
        session.add(AlertRule(match_string="changed state to up", match_type="contains",
                              prod_handling="Ticket_only", dev_handling="Log_only",
                              team_assignment="NETO", clears_rule_id=down.id))  # fmt: skip
        return down.id


def _flaps(n: int) -> list[dict]:
    sides = ["down", "up"] * n
    return [wire_event("core-sw-01", f"Interface Gi0/1 changed state to {s}") for s in sides]


def _raised(runtime) -> list[dict]:  # type: ignore[no-untyped-def]
    return [
        entry.events[0]
        for entry in runtime.outbox.overdue(0, limit=100, now=time.time() + 3600)
        if entry.events[0].get("custom_info", {}).get("flapping") == "raised"
    ]


def _reasons(runtime, batch: list[dict]) -> list[str | None]:  # type: ignore[no-untyped-def]
    with runtime.sessions() as session:
        rows = session.execute(
            select(EventAuditLog.correlation_id, EventAuditLog.held_reason)
        ).all()
    reasons = {str(r.correlation_id): r.held_reason for r in rows}
    return [reasons[w["correlation_id"]] for w in batch]


def test_classify_raises_once_holds_as_flapping_and_flush_ends_it(
    settings: Settings, redis_client: redis.Redis
) -> None:
    app = Runtime(settings).celery
    runtime = runtime_of(app)
    runtime.dynamic_config.set("flap_transitions", 3)
    runtime.dynamic_config.set("flap_quiet_seconds", 1)
    runtime.dynamic_config.set("dedup_window_seconds", 0)
    down_id = _pair(runtime)
    batch = _flaps(3)
    assert classify_batch(runtime, app, batch)["audited"] == 6
    assert classify_batch(runtime, app, batch)["audited"] == 0  # redelivered
    # down, up, down forwarded; the third transition (up) raises and is held, and all after it.
    assert _reasons(runtime, batch) == [None, None, None, "flapping", "flapping", "flapping"]
    (raised,) = _raised(runtime)  # published twice (redelivery) under one external_id
    assert raised["signature"] == f"core-sw-01::flapping::{down_id}"
    assert raised["custom_info"]["flap_transitions"] == 3

    time.sleep(1.1)
    sent: list[dict] = []
    assert flapping.Flapping().flush(runtime, sent.extend) == 1
    assert flapping.Flapping().flush(runtime, sent.extend) == 0
    assert (sent[0]["custom_info"]["flap_held"], sent[0]["custom_info"]["flap_transitions"]) == (
        3,
        5,
    )


def test_duplicates_still_count_as_transitions_and_keep_their_reason(
    settings: Settings, redis_client: redis.Redis
) -> None:
    app = Runtime(settings).celery
    runtime = runtime_of(app)
    runtime.dynamic_config.set("flap_transitions", 3)
    _pair(runtime)
    batch = _flaps(3)
    classify_batch(runtime, app, batch)
    # Within the dedup window every later down and up repeats the first ones: each is audited
    # once, as a duplicate, but the transitions they make still raise the flapping alert.
    assert _reasons(runtime, batch) == [None, None] + ["duplicate"] * 4
    assert len(_raised(runtime)) == 1
