"""Classify's backpressure on real processes: a backed-up ticket lane sheds tickets, never pages.

The ticket lane backs up while no forward worker runs. Above the shed threshold, classify sheds
Ticket_only alerts (dead letters in mode ``dlq``, a delayed publish in mode ``defer``) and still
publishes pages; every event is audited once, a shed one with held_reason ``shed``. Once forward
workers and remediation run, every alert reaches the Moog sink, the shed ones included.
"""

from __future__ import annotations

import orjson
import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import insert, select

from mutt_app.cli import main
from mutt_app.db.models import AlertRule, DeadLetter, EventAuditLog
from mutt_app.forwarding.lanes import PAGE_QUEUE, TICKET_QUEUE
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import FORWARD_QUEUES, Stack
from tests.factories import posted_event
from tests.services import wait_for

BACKLOG = 12  # tickets queued before the threshold is crossed
SHED_AT = 10


def _post(stack: Stack, events: list[dict]) -> list[str]:
    response = stack.post(orjson.dumps(events), **{"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    return response.json()["correlation_ids"]


def _config(stack: Stack, name: str, value: object) -> None:
    result = CliRunner().invoke(
        main, ["config", "set", name, str(value), "--reason", "shedding test"], env=stack.env
    )
    assert result.exit_code == 0, result.output


def _held(stack: Stack) -> dict[str, str | None]:
    with stack.engine.connect() as conn:
        rows = conn.execute(select(EventAuditLog.correlation_id, EventAuditLog.held_reason))
        return {str(cid): reason for cid, reason in rows}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["dlq", "defer"])
def test_a_backed_up_ticket_lane_sheds_tickets_never_pages(
    make_stack: StackFactory, mode: str
) -> None:
    stack = make_stack(
        MOOG_RATE_LIMIT="50",
        DEDUP_WINDOW_SECONDS="0",  # distinct alerts here; deduplication has its own tests
        MOOG_BATCH_SIZE="1",  # the thresholds count forward messages: one alert each here
        REMEDIATION_INTERVAL_SECONDS="1",
        REMEDIATION_BACKOFF_BASE="1",
    )
    with stack.engine.begin() as conn:
        conn.execute(
            insert(AlertRule),
            [
                dict(match_string="CRITICAL", match_type="contains", priority=900,
                     prod_handling="Page_and_ticket", dev_handling="Ticket_only",
                     team_assignment="NETO"),
                dict(match_string="changed state to down", match_type="contains", priority=500,
                     prod_handling="Ticket_only", dev_handling="Log_only",
                     team_assignment="NETO"),
            ],
        )  # fmt: skip
    with stack.together():
        stack.start_sink().start_ingest()
        stack.start_worker("classify", queues="mutt.classify", concurrency=1)
    _config(stack, "alerter_queue_warn_threshold", 5)
    _config(stack, "alerter_queue_shed_threshold", SHED_AT)
    _config(stack, "alerter_shed_mode", mode)
    _config(stack, "alerter_defer_sleep_ms", 3000)
    client = redis.Redis.from_url(stack.env["REDIS_URL"])

    # No forward worker yet: the ticket lane fills past the shed threshold.
    down = "%LINK-3-UPDOWN: Interface {} changed state to down"
    backlog = _post(
        stack, [posted_event(down.format(f"Gi0/{i}"), f"sw-{i}") for i in range(BACKLOG)]
    )
    wait_for(lambda: client.llen(TICKET_QUEUE) >= BACKLOG, 30, "the ticket backlog")
    stack.settle(1.2)  # classify reads the lane's length at most once a second

    late = [posted_event(down.format(f"Te1/{i}"), f"acc-{i}") for i in range(4)]
    shed = _post(stack, late)
    page = _post(stack, [posted_event("CRITICAL power supply 2 failed", "core-rtr-01")])
    stack.wait_audited(BACKLOG + len(late) + 1)

    held = _held(stack)
    assert {cid: held[cid] for cid in shed} == dict.fromkeys(
        shed, "shed" if mode == "dlq" else None
    )
    assert held[page[0]] is None and not any(held[cid] for cid in backlog)
    assert client.llen(PAGE_QUEUE) == 1  # the page was published on its lane, not shed
    with stack.engine.connect() as conn:
        letters = conn.execute(select(DeadLetter.correlation_id, DeadLetter.error_type)).all()
    expected = {(cid, "shed") for cid in shed} if mode == "dlq" else set()
    assert {(str(cid), kind) for cid, kind in letters} == expected
    samples = stack.worker_metrics()
    assert samples[f'mutt_alerter_shed_events_total{{mode="{mode}"}}'] == len(late)

    # Forwarding and remediation resume: every alert arrives, the shed ones (replayed or deferred)
    # included, each once.
    with stack.together():
        stack.start_worker("forward", queues=FORWARD_QUEUES, concurrency=4, pool="threads")
        stack.start_worker("maintenance", queues="mutt.maintenance", concurrency=1)
        stack.start_beat()
    every = set(backlog + shed + page)
    wait_for(
        lambda: {a["external_id"] for a in stack.sink_events()} >= every,
        90,
        "every alert at the sink",
        interval=0.5,
    )
    stack.settle(2)
    ids = [a["external_id"] for a in stack.sink_events()]
    assert sorted(ids) == sorted(every)
