"""Page lanes and classify's backpressure on a real Redis and PostgreSQL.

Every path that publishes a forward (classify, reconciliation, dead-letter replay) puts a page on
``mutt.forward.page``; shedding takes Ticket_only alerts out of the ticket lane's way, never pages.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import orjson
import pytest
import redis
from prometheus_client import REGISTRY
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from mutt_app.config import Settings
from mutt_app.db.models import DeadLetter
from mutt_app.forwarding import deadletters
from mutt_app.holdback.backpressure import Backpressure
from mutt_app.holdback.pipeline import publish_forwards
from mutt_app.ledger import OUTBOX, Batch, Ledger
from mutt_app.runtime import Runtime, runtime_of
from tests import broker_messages

PAGE, TICKET = "mutt.forward.page", "mutt.forward"


def _alert(handling: str) -> dict[str, Any]:
    external_id = str(uuid.uuid4())
    return {
        "signature": f"core-sw-01::1::{handling}",
        "external_id": external_id,
        "source": "core-sw-01",
        "description": "Interface Gi0/1 changed state to down",
        "custom_info": {"handling": handling, "correlation_id": external_id},
    }


def _queued(client: redis.Redis, queue: str, newest: int = 0) -> list[dict[str, Any]]:
    """Alerts in forward messages waiting in ``queue`` (all, or the ``newest`` n messages):
    {"alert", "eta"} each (a message carries a batch of alerts, or one)."""
    found = []
    for raw in client.lrange(queue, 0, newest - 1):
        message = broker_messages.envelope(raw)
        args = orjson.loads(broker_messages.body(message))[0]
        batch = args[0] if isinstance(args[0], list) else [args[0]]
        found += [{"alert": alert, "eta": message["headers"].get("eta")} for alert in batch]
    return found


def _ids(messages: list[dict[str, Any]]) -> set[str]:
    return {m["alert"]["external_id"] for m in messages}


def _shed(mode: str) -> float:
    return REGISTRY.get_sample_value("mutt_alerter_shed_events_total", {"mode": mode}) or 0.0


@pytest.fixture
def celery_app(settings: Settings) -> Any:
    app = Runtime(settings).celery
    app.loader.import_default_modules()
    return app


def _fill_ticket_lane(client: redis.Redis, n: int) -> None:
    client.rpush(TICKET, *[b"backlog"] * n)


def _set(app: Any, **values: object) -> None:
    for name, value in values.items():
        runtime_of(app).dynamic_config.set(name, value)  # type: ignore[arg-type]


def test_pages_and_tickets_are_published_on_their_lanes(
    celery_app: Any, redis_client: redis.Redis
) -> None:
    page, ticket, meta = _alert("Page_and_ticket"), _alert("Ticket_only"), _alert("meta_alert")
    assert publish_forwards(runtime_of(celery_app), celery_app, [ticket, page, meta]) == {}
    assert _ids(_queued(redis_client, PAGE)) == {page["external_id"]}
    assert _ids(_queued(redis_client, TICKET)) == {ticket["external_id"], meta["external_id"]}


def test_reconcile_republishes_a_lost_page_on_the_page_lane(
    celery_app: Any, settings: Settings, redis_client: redis.Redis
) -> None:
    page, ticket = _alert("Page_and_ticket"), _alert("Ticket_only")
    long_ago = time.time() - settings.ledger_reconcile_after - 60
    Ledger(redis_client, OUTBOX).record(
        [Batch(a["external_id"], [a]) for a in (page, ticket)], now=long_ago
    )
    assert celery_app.tasks["mutt.reconcile_ledger"].apply().get() == 2
    assert _ids(_queued(redis_client, PAGE)) == {page["external_id"]}
    assert _ids(_queued(redis_client, TICKET)) == {ticket["external_id"]}


def test_a_replayed_page_goes_back_to_the_page_lane(
    celery_app: Any, engine: Engine, settings: Settings, redis_client: redis.Redis
) -> None:
    page = _alert("Page_and_ticket")
    with Session(engine) as session, session.begin():
        deadletters.add_dead_letter(
            session,
            task_name="mutt.forward_to_moog",
            queue=TICKET,  # as dead letters written before lanes existed say
            payload={"alert": page},
            error="Moog answered 503",
            backoff_base=1,
        )
    with Session(engine) as session, session.begin():
        letter = session.scalars(select(DeadLetter)).one()
        assert deadletters.replay(session, celery_app, letter) == ("mutt.forward_to_moog", PAGE)
    assert _ids(_queued(redis_client, PAGE)) == {page["external_id"]}


def test_shedding_in_dlq_mode_dead_letters_tickets_and_sends_pages(
    celery_app: Any, engine: Engine, redis_client: redis.Redis
) -> None:
    _set(celery_app, alerter_queue_warn_threshold=5, alerter_queue_shed_threshold=10)
    _fill_ticket_lane(redis_client, 10)
    page, tickets = _alert("Page_and_ticket"), [_alert("Ticket_only") for _ in range(3)]
    before = _shed("dlq")

    shed = publish_forwards(runtime_of(celery_app), celery_app, [*tickets, page])

    assert shed == {t["external_id"]: "dlq" for t in tickets}
    assert _ids(_queued(redis_client, PAGE)) == {page["external_id"]}  # a page is never shed
    assert redis_client.llen(TICKET) == 10  # nothing added behind the backlog
    with Session(engine) as session:
        letters = list(session.scalars(select(DeadLetter)))
    assert sorted(str(d.correlation_id) for d in letters) == sorted(
        t["external_id"] for t in tickets
    )
    assert {(d.error_type, d.task_name, d.attempts) for d in letters} == {
        ("shed", "mutt.forward_to_moog", 0)
    }
    assert all(
        deadletters.replay_call(d) == ("mutt.forward_to_moog", [d.payload["alert"]], {}, TICKET)
        for d in letters
    )
    outbox = Ledger(redis_client, OUTBOX)
    assert outbox.depth() == 1  # the page only: a shed alert's record is its dead letter
    assert _shed("dlq") - before == 3


def test_shedding_in_defer_mode_publishes_tickets_with_a_delay(
    celery_app: Any, engine: Engine, redis_client: redis.Redis
) -> None:
    _set(
        celery_app,
        alerter_queue_warn_threshold=5,
        alerter_queue_shed_threshold=10,
        alerter_shed_mode="defer",
        alerter_defer_sleep_ms=1500,
    )
    _fill_ticket_lane(redis_client, 12)
    page, ticket = _alert("Page_and_ticket"), _alert("Ticket_only")
    before = _shed("defer")

    assert publish_forwards(runtime_of(celery_app), celery_app, [ticket, page]) == {
        ticket["external_id"]: "defer"
    }

    assert redis_client.llen(TICKET) == 13
    (newest,) = _queued(redis_client, TICKET, newest=1)  # kombu LPUSHes: the newest is first
    assert newest["alert"] == ticket and newest["eta"] is not None  # a countdown, not sent now
    (sent_page,) = _queued(redis_client, PAGE)
    assert sent_page["alert"] == page and sent_page["eta"] is None
    with Session(engine) as session:
        assert list(session.scalars(select(DeadLetter))) == []
    assert Ledger(redis_client, OUTBOX).depth() == 2  # still recorded: it is published
    assert _shed("defer") - before == 1


def test_above_warn_classify_logs_and_sets_the_gauges_but_sheds_nothing(
    celery_app: Any, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    _set(celery_app, alerter_queue_warn_threshold=5, alerter_queue_shed_threshold=10)
    _fill_ticket_lane(redis_client, 7)
    ticket = _alert("Ticket_only")
    with caplog.at_level(logging.WARNING, logger="mutt_app.holdback.backpressure"):
        assert publish_forwards(runtime_of(celery_app), celery_app, [ticket]) == {}
    assert "mutt.forward holds 7 messages (warn threshold 5)" in caplog.text
    assert REGISTRY.get_sample_value("mutt_alerter_backpressure_state") == 1
    assert REGISTRY.get_sample_value("mutt_alerter_queue_depth") == 7
    assert redis_client.llen(TICKET) == 8  # sent


def test_the_lane_is_read_once_a_second_not_per_alert(
    celery_app: Any, redis_client: redis.Redis
) -> None:
    _set(celery_app, alerter_queue_warn_threshold=5, alerter_queue_shed_threshold=10)
    pressure = Backpressure(redis_client, runtime_of(celery_app).dynamic_config, read_every=0.5)
    assert pressure.pressure().depth == 0
    _fill_ticket_lane(redis_client, 20)
    assert pressure.pressure().depth == 0  # the cached reading
    time.sleep(0.55)
    reading = pressure.pressure()
    assert (reading.depth, reading.level, reading.mode) == (20, 2, "dlq")


def test_alerts_are_published_in_batches_of_one_lane_up_to_moog_batch_size(
    celery_app: Any, redis_client: redis.Redis
) -> None:
    _set(celery_app, moog_batch_size=3)
    tickets = [_alert("Ticket_only") for _ in range(7)]
    pages = [_alert("Page_and_ticket") for _ in range(2)]
    mixed = [tickets[0], pages[0], *tickets[1:5], pages[1], *tickets[5:]]
    assert publish_forwards(runtime_of(celery_app), celery_app, mixed) == {}

    def batches(queue: str) -> list[list[str]]:
        raws = reversed(redis_client.lrange(queue, 0, -1))  # LPUSHed: oldest last
        bodies = [broker_messages.task_args(r) for r in raws]
        return [[alert["external_id"] for alert in args[0]] for args in bodies]

    ids = [a["external_id"] for a in tickets]
    assert batches(PAGE) == [[p["external_id"] for p in pages]]  # pages only with pages
    assert batches(TICKET) == [ids[0:3], ids[3:6], ids[6:7]]  # in order, at most 3 each
    # One outbox entry per alert, whatever the batches.
    assert Ledger(redis_client, OUTBOX).depth() == 9
