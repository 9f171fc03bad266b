"""Only a real delivery counts: what Moog's answer says decides each alert's fate.

Real forward workers (celery, threads) post to a Moog stand-in over HTTP that answers with a
redirect, a 207 naming failed events, or a 200 whose body is not Moog's. Each alert ends delivered
exactly once or dead-lettered with the reason, nothing in between, and a redirect's target
receives nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from mutt_app.forwarding import history
from mutt_app.ledger import OUTBOX, Ledger
from tests.e2e.alerts import dead_letters, made_alerts, publish_alerts
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import FORWARD_QUEUES, Stack
from tests.moog_stand_in import StandIn
from tests.services import wait_for

FAST = {
    "MOOG_RETRY_BASE_DELAY": "0.2",
    "MOOG_RETRY_MAX_DELAY": "1",
    "MOOG_WEBHOOK_TIMEOUT": "2",
    "MOOG_CIRCUIT_BREAKER_TIMEOUT": "3",
    "MOOG_BATCH_SIZE": "5",
}
MARKER = "REFUSE-ME"


@pytest.fixture
def stand_ins() -> Iterator[list[StandIn]]:
    started: list[StandIn] = []
    yield started
    for stand_in in started:
        stand_in.stop()


def _start(stand_ins: list[StandIn], answer: Any) -> StandIn:
    stand_in = StandIn(answer).start()
    stand_ins.append(stand_in)
    return stand_in


def _forward_stack(make_stack: StackFactory, url: str, **env: str) -> Stack:
    stack = make_stack(**FAST, MOOG_WEBHOOK_URL=url, **env)
    stack.start_worker("forward", queues=FORWARD_QUEUES, concurrency=4, pool="threads")
    return stack


def _settled(stack: Stack) -> None:
    outbox = Ledger(redis.Redis.from_url(stack.env["REDIS_URL"]), OUTBOX)
    wait_for(lambda: outbox.depth() == 0, 30, "every outbox entry settled")


def _total(samples: dict[str, float], name: str, labels: str = "") -> float:
    return sum(
        v for k, v in samples.items() if (k == name or k.startswith(name + "{")) and labels in k
    )


@pytest.mark.slow
def test_a_redirect_is_never_followed_and_dead_letters_its_batch(
    make_stack: StackFactory, stand_ins: list[StandIn]
) -> None:
    elsewhere = _start(stand_ins, lambda _events: (200, {}, b'{"success": true}'))
    codes = iter([301, 302, 307, 308])
    current = {"code": 0}

    def redirect(_events: list[dict[str, Any]]) -> tuple[int, dict[str, str], bytes]:
        return current["code"], {"Location": elsewhere.url}, b""

    moog = _start(stand_ins, redirect)
    stack = _forward_stack(make_stack, moog.url)
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    for code in codes:
        current["code"] = code
        alerts = made_alerts(5, f"redirect-{code}")
        ids = {a["external_id"] for a in alerts}
        publish_alerts(stack, alerts)
        wait_for(lambda ids=ids: ids <= set(dead_letters(stack)), 30, f"{code}: 5 dead letters")
        letters = dead_letters(stack)
        for key in ids:
            error_type, message = letters[key]
            assert error_type == f"HTTP{code}"
            assert f"Moog answered {code}" in message and elsewhere.url in message
            report = history.report(client, key)
            assert report["sent"] is False
            outcomes = [(a["outcome"], a["status"]) for a in report["attempts"]]
            assert outcomes == [("redirected", code), ("dead_lettered", code)]
            assert elsewhere.url in report["attempts"][0]["error"]
        # One request for the batch: no split, no retry, nothing to the Location.
        assert sum(1 for r in moog.requests if {e["external_id"] for e in r} & ids) == 1
    _settled(stack)
    stack.settle(1)
    assert elsewhere.requests == []
    samples = stack.worker_metrics()
    for code in (301, 302, 307, 308):
        assert _total(samples, "mutt_moog_redirects_total", f'status="{code}"') == 1
    assert _total(samples, "mutt_dead_letters_total", 'reason="redirected"') == 20


def _refuse_marked(events: list[dict[str, Any]]) -> tuple[int, dict[str, str], bytes]:
    """Moog taking a batch but for the events carrying MARKER: a 207 naming them, by index for
    the REST LAM, by ``dedupe_key`` for the Cloud Events API."""
    failed = [
        {"message": f"severity not accepted for {e['source']}"}
        | ({"dedupe_key": e["dedupe_key"]} if "dedupe_key" in e else {"index": i})
        for i, e in enumerate(events)
        if MARKER in e.get("description", "")
    ]
    if not failed:
        return 200, {}, b'{"success": true, "message": "Processed"}'
    return 207, {"Content-Type": "application/json"}, json.dumps({"failed": failed}).encode()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["rest_lam", "cloud"])
def test_a_207_with_one_failed_event_delivers_four_and_dead_letters_one(
    make_stack: StackFactory, stand_ins: list[StandIn], fmt: str
) -> None:
    moog = _start(stand_ins, _refuse_marked)
    stack = _forward_stack(make_stack, moog.url, MOOG_FORMAT=fmt)
    alerts = made_alerts(5, "partial")
    refused = alerts[2]
    refused["description"] += f" {MARKER}"
    publish_alerts(stack, alerts)

    wait_for(lambda: refused["external_id"] in dead_letters(stack), 30, "the dead letter")
    _settled(stack)
    stack.settle(1)
    letters = dead_letters(stack)
    assert list(letters) == [refused["external_id"]]
    error_type, message = letters[refused["external_id"]]
    assert error_type == "HTTP207" and "severity not accepted for host-2" in message
    assert len(moog.requests) == 1 and len(moog.requests[0]) == 5  # one request, sent once
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    for alert in alerts:
        report = history.report(client, alert["external_id"])
        outcomes = [(a["outcome"], a["status"]) for a in report["attempts"]]
        if alert is refused:
            assert report["sent"] is False
            assert outcomes == [("rejected", 207), ("dead_lettered", 207)]
            assert "severity not accepted" in report["attempts"][0]["error"]
        else:
            assert report["sent"] is True and outcomes == [("delivered", 207)]
    samples = stack.worker_metrics()
    assert _total(samples, "mutt_moog_events_refused_total") == 1
    assert _total(samples, "mutt_moog_alerts_processed_total", 'status="success"') == 4


@pytest.mark.slow
def test_two_failed_events_of_a_207_are_sent_again_alone_then_dead_lettered(
    make_stack: StackFactory, stand_ins: list[StandIn]
) -> None:
    # The refused group goes the half-refused batch's way: split until each stands alone.
    moog = _start(stand_ins, _refuse_marked)
    stack = _forward_stack(make_stack, moog.url)
    alerts = made_alerts(5, "partial-two")
    refused = [alerts[1], alerts[4]]
    for alert in refused:
        alert["description"] += f" {MARKER}"
    publish_alerts(stack, alerts)

    ids = {a["external_id"] for a in refused}
    wait_for(lambda: ids <= set(dead_letters(stack)), 30, "two dead letters")
    _settled(stack)
    stack.settle(1)
    assert set(dead_letters(stack)) == ids
    # The batch, then each refused alert alone (the group of two is split before it is sent).
    assert sorted(len(r) for r in moog.requests) == [1, 1, 5]
    taken = [e["external_id"] for r in moog.requests for e in r if MARKER not in e["description"]]
    assert sorted(taken) == sorted(a["external_id"] for a in alerts if a not in refused)


@pytest.mark.slow
def test_a_200_with_an_unreadable_body_dead_letters_its_batch_and_is_counted(
    make_stack: StackFactory, stand_ins: list[StandIn]
) -> None:
    page = b"<html><body>Please log in to the proxy</body></html>"
    moog = _start(stand_ins, lambda _events: (200, {"Content-Type": "text/html"}, page))
    stack = _forward_stack(make_stack, moog.url)
    alerts = made_alerts(5, "unreadable")
    ids = {a["external_id"] for a in alerts}
    publish_alerts(stack, alerts)

    wait_for(lambda: ids <= set(dead_letters(stack)), 30, "5 dead letters")
    _settled(stack)
    stack.settle(1)
    assert len(moog.requests) == 1  # not split, not retried: sent once
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    for key, (error_type, message) in dead_letters(stack).items():
        assert error_type == "UnreadableAnswer"
        assert "unreadable answer: not JSON: <html>" in message
        report = history.report(client, key)
        assert report["sent"] is False
        outcomes = [(a["outcome"], a["status"]) for a in report["attempts"]]
        assert outcomes == [("unreadable", 200), ("dead_lettered", 200)]
    samples = stack.worker_metrics()
    assert _total(samples, "mutt_moog_unreadable_answers_total") == 1
    assert _total(samples, "mutt_dead_letters_total", 'reason="unreadable_answer"') == 5
