"""OpenTelemetry traces of real processes (OTEL_ENABLED): one trace from a sender's ``traceparent``
through ingest, the publishing round, classify and the hold-back stages to forward and the Moog
request, exported over OTLP/HTTP to a receiver in the test that decodes the protobuf; the spans and
attributes are the ones README's "Tracing" section lists."""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from tests.e2e.conftest import StackFactory
from tests.e2e.stack import FORWARD_QUEUES, Stack
from tests.factories import posted_event, seed_pipeline
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.services import wait_for

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_spans() -> dict[str, list[str]]:
    """README's span table: span name -> the attributes it lists by name (not ``http.*``)."""
    section = README.read_text().split("\n## Tracing (OpenTelemetry)\n", 1)[1].split("\n## ", 1)[0]
    section = section.split("\n| Span |", 1)[1]
    spans = {}
    for row in re.findall(r"^\| `([a-zA-Z0-9_/. ]+)` \|.*\|(.*)\|$", section, re.MULTILINE):
        name, attributes = row
        spans[name] = [a for a in re.findall(r"`([a-z_.]+)`", attributes) if "*" not in a]
    return spans


def _traceparent() -> tuple[str, str, str]:
    """A sender's W3C traceparent header: (header, trace id, span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def _post(stack: Stack, event: dict, traceparent: str) -> str:
    answer = stack.post(
        orjson.dumps(event), **{"Content-Type": "application/json", "traceparent": traceparent}
    )
    assert answer.status_code == 200, answer.text
    [cid] = answer.json()["correlation_ids"]
    return cid


def _wait_spans(
    otlp: OtlpReceiver, trace_id: str, done: Callable[[list[ReceivedSpan]], bool], stack: Stack
) -> list[ReceivedSpan]:
    try:
        wait_for(lambda: done(otlp.trace(trace_id)), 30, f"the spans of trace {trace_id}")
    except TimeoutError as exc:
        names = sorted({s.name for s in otlp.trace(trace_id)})
        raise AssertionError(f"trace {trace_id} has only {names}\n{stack.logs()}") from exc
    return otlp.trace(trace_id)


def _one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


@pytest.fixture
def otlp() -> OtlpReceiver:  # type: ignore[misc]
    with OtlpReceiver() as receiver:
        yield receiver


def test_a_senders_trace_reaches_the_moog_request_through_every_stage(
    make_stack: StackFactory, otlp: OtlpReceiver
) -> None:
    stack = make_stack(
        OTEL_ENABLED="true",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",  # export within a tenth of a second, not five
        # Two requests posted together share one publishing round: a round goes out when it has
        # two events, or a second after its first request (the longest linger).
        CLASSIFY_BATCH_SIZE="2",
        INGEST_LINGER_MS="1000",
        LOG_JSON_ENABLED="true",
    )
    seed_pipeline(stack.engine)  # rule 1 forwards "CRITICAL ..." (Page_and_ticket)
    stack.start_sink().start_ingest()
    # As production runs them: classify in a prefork worker (traced in each child after the fork),
    # forward in a threaded one (traced in its one process, which also does the broker's
    # housekeeping: the Redis calls that must not become traces of their own).
    with stack.together():
        stack.start_classify_worker("worker")
        stack.start_worker("forward", queues=FORWARD_QUEUES, pool="threads", concurrency=4)

    header, trace_id, sender_span = _traceparent()
    cid = _post(stack, posted_event("CRITICAL power supply failed"), header)
    stack.wait_sink(1)
    listed = _readme_spans()
    assert len(listed) == 13, listed  # the table was found
    spans = _wait_spans(otlp, trace_id, lambda got: set(listed) <= {s.name for s in got}, stack)
    for name, attributes in listed.items():
        span = _one(spans, name)
        missing = [a for a in attributes if a not in span.attributes]
        assert missing == [], (name, span.attributes)

    request = _one(spans, "POST /api/v2/ingest")
    assert (request.kind, request.service, request.parent_id) == (
        "server",
        "mutt-ingest",
        sender_span,
    )
    assert request.attributes["mutt.correlation_ids"] == [cid]
    assert request.attributes["mutt.events.accepted"] == 1
    publish = _one(spans, "mutt.ingest.publish")
    assert publish.parent_id == request.span_id and publish.links == []
    assert publish.attributes["mutt.requests"] == 1
    [batch_id] = publish.attributes["mutt.batch_ids"]
    sent = _one(spans, "apply_async/mutt.classify_event")
    assert sent.parent_id == publish.span_id

    classify = _one(spans, "run/mutt.classify_event")
    assert (classify.service, classify.parent_id) == ("mutt-worker", sent.span_id)
    assert classify.attributes["mutt.batch_id"] == batch_id
    assert classify.attributes["mutt.correlation_ids"] == [cid]
    assert classify.attributes["mutt.audited"] == 1
    stages = [s for s in spans if s.name.startswith("mutt.holdback.")]
    assert {s.parent_id for s in stages} == {classify.span_id}
    assert all(s.attributes["mutt.alerts.held"] == 0 for s in stages)
    assert _one(spans, "mutt.holdback.maintenance").attributes["mutt.alerts.in"] == 1

    handed = _one(spans, "apply_async/mutt.forward_to_moog")
    assert handed.parent_id == classify.span_id
    forward = _one(spans, "run/mutt.forward_to_moog")
    assert forward.parent_id == handed.span_id
    assert forward.attributes["mutt.correlation_ids"] == [cid]
    assert forward.attributes["mutt.delivered"] == 1
    moog = [s for s in spans if s.kind == "client" and s.name == "POST"]
    assert [s.parent_id for s in moog] == [forward.span_id]
    http = moog[0].attributes
    assert f":{stack.sink_port}/webhook" in str(http.get("url.full", http.get("http.url")))
    assert http.get("http.response.status_code", http.get("http.status_code")) == 200

    audit = _one(spans, "mutt.classify.audit")
    assert audit.parent_id == classify.span_id and audit.attributes["mutt.audited"] == 1
    # The instrumentations' own spans sit under the work that made them: SQL in the audit's
    # transaction, the classify task's Redis calls.
    under_audit = [s for s in spans if s.parent_id == audit.span_id]
    assert any(s.attributes.get("db.system") == "postgresql" for s in under_audit), under_audit
    under_classify = [s for s in spans if s.parent_id == classify.span_id]
    assert any(s.attributes.get("db.system") == "redis" for s in under_classify), under_classify

    # The event's page names its trace: the audit row keeps the classify task's trace id.
    with stack.engine.connect() as connection:
        recorded = connection.execute(
            text("SELECT trace_id FROM event_audit_log WHERE correlation_id = :cid"), {"cid": cid}
        ).scalar_one()
    assert recorded == trace_id

    # So does every log line made inside it (LOG_JSON_ENABLED): with the span that made it.
    traced = [
        line
        for line in stack.logs(None).splitlines()
        if line.startswith("{") and orjson.loads(line).get("trace_id") == trace_id
    ]
    assert traced, stack.logs()
    made_by = {orjson.loads(line)["span_id"] for line in traced}
    assert made_by <= {s.span_id for s in spans}, made_by
    # Nothing made outside a request or a task: no trace is a lone Redis call.
    roots = [(s.name, s.service) for s in otlp.spans() if not s.parent_id and s.kind == "client"]
    assert roots == []

    # Two senders whose requests share a round: the round is the first one's child and links
    # to the other, and the one classify task carries both events.
    posts = [_traceparent(), _traceparent()]
    cids: dict[str, str] = {}

    def send(header: str, trace: str, host: str) -> None:
        cids[trace] = _post(stack, posted_event("CRITICAL fan failed", host), header)

    threads = [
        threading.Thread(target=send, args=(header, trace, f"sw-{n}"))
        for n, (header, trace, _) in enumerate(posts)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(cids) == 2
    [(_, first, _), (_, second, _)] = posts

    def both_traced() -> bool:
        spans = [s for t in (first, second) for s in otlp.trace(t)]
        names = [s.name for s in spans]
        return names.count("POST /api/v2/ingest") == 2 and "run/mutt.classify_event" in names

    wait_for(both_traced, 30, "both requests' spans and the shared round's classify span")
    requests_by_trace = {t: _one(otlp.trace(t), "POST /api/v2/ingest") for t in (first, second)}
    [round_span] = [
        s for t in (first, second) for s in otlp.trace(t) if s.name == "mutt.ingest.publish"
    ]
    parent = requests_by_trace[round_span.trace_id]
    other = requests_by_trace[second if round_span.trace_id == first else first]
    assert round_span.parent_id == parent.span_id
    assert round_span.links == [(other.trace_id, other.span_id)]
    assert round_span.attributes["mutt.requests"] == 2
    shared = _one(otlp.trace(round_span.trace_id), "run/mutt.classify_event")
    assert sorted(shared.attributes["mutt.correlation_ids"]) == sorted(cids.values())
