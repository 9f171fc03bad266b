"""POST /api/v2/ingest: accept events from rsyslog, syslog-ng, snmptrapd relays and scripts.

Valid events of a body are accepted even when others are not (those are listed with their index and
reason). Accepted events are recorded in the ledger and published to ``classify_event`` in batches of
CLASSIFY_BATCH_SIZE before the 200 goes out; concurrent requests share those writes
(:mod:`mutt_app.web.ingest.publisher`). With INGEST_MIN_REPLICAS (default 1 through Sentinel) those writes
must also be acknowledged by that many replicas, else 503 with Retry-After
(:mod:`mutt_app.web.ingest.replication`). A body with nothing valid is answered 422, never 400:
syslog-ng resends a 400 forever and rsyslog files it as an error, and such a body will never succeed.

Without INGEST_API_KEY the endpoint does not start unless INGEST_ALLOW_OPEN says it is meant to be
open (then its /health says ``"auth": "open"``). With INGEST_API_KEY set, a wrong ``X-API-Key`` is 401 and counts against its address
(:mod:`mutt_app.web.throttle`): past WEBUI_AUTH_IP_MAX_FAILURES within WEBUI_AUTH_IP_WINDOW_SECONDS the
address is answered 429 with Retry-After, before its key is compared, until its failures age out.

A body larger than MAX_INGEST_BODY_BYTES is answered 413 whatever its framing (Content-Length or
chunked) and nothing of it is accepted. Each accepted event's JSON is written once, while it is
validated (:attr:`Event.wire_json`), and those bytes go into the ledger and the task message as they
are: an item that cannot be written is that request's rejection, never a failed round for others.
"""

from __future__ import annotations

import hmac
import logging
import time
from datetime import UTC, datetime
from typing import BinaryIO

import orjson
import redis
from flask import Blueprint, Response, current_app, jsonify, request
from kombu.exceptions import BatchPublishError
from kombu.exceptions import OperationalError as BrokerError
from werkzeug.exceptions import RequestEntityTooLarge

from mutt_app import metrics, tracing
from mutt_app.config import VERSION
from mutt_app.events.body import BodyError, parse_body
from mutt_app.events.event_time import EventTimeRange
from mutt_app.events.schema import Event, validate_items
from mutt_app.ledger import Batch
from mutt_app.logs import correlation, log_context
from mutt_app.names import CLASSIFY_QUEUE, CLASSIFY_TASK
from mutt_app.runtime import Runtime
from mutt_app.watch import slo
from mutt_app.web import throttle
from mutt_app.web.ingest.publisher import BatchPublisher, PublishTimeout, QueueFull
from mutt_app.web.ingest.replication import ReplicationShortfall, confirm_replicated

log = logging.getLogger(__name__)

bp = Blueprint("ingest", __name__)

RETRY_AFTER_SECONDS = 5
# Publishing must fail fast when Redis is gone, so the client gets its 503 and retries.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}
# What jsonify writes (sorted keys, compact, a final newline), written by orjson; a body that is not
# all ASCII still goes through jsonify, which escapes it (orjson would write it as UTF-8).
_ANSWER_JSON = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
# The series of every request, looked up once: labels() takes a lock and hashes its values.
_EVENTS_ACCEPTED = metrics.INGEST_EVENTS.labels("accepted")
_EVENTS_REJECTED = metrics.INGEST_EVENTS.labels("rejected")
_ACCEPTED_REQUESTS = metrics.INGEST_REQUESTS.labels("success", "")


class Ingestor:
    """What the ingest endpoint needs, built once per process from its :class:`Runtime`."""

    def __init__(self, runtime: Runtime) -> None:
        self.settings = settings = runtime.settings
        self.celery = runtime.celery
        # What requests ask of Redis themselves (the key throttle, failure counts, /health).
        self.redis = runtime.redis
        # The publishing rounds get a Runtime, so a Redis pool, of their own. Under gevent
        # (deploy/gunicorn/ingest.conf.py) every request runs at once: requests asking Redis could
        # otherwise hold every one of the REDIS_MAX_CONNECTIONS and fail the round that publishes
        # the good senders' events.
        self._publishing = publishing = Runtime(settings, runtime.redis_profile)
        self.ledger = publishing.ledger
        self.dynamic_config = publishing.dynamic_config
        if settings.ingest_api_key is None:
            # Only with INGEST_ALLOW_OPEN (create_ingest_app refuses to start otherwise).
            log.warning(
                "INGEST_API_KEY is not set and INGEST_ALLOW_OPEN is true: the ingest endpoint"
                " is open, it accepts posts from anyone"
            )
        self.clear_addresses = throttle.ClearAddresses()
        self.event_time = EventTimeRange.from_settings(settings)
        key = settings.ingest_api_key
        self._expected_key = None if key is None else key.get_secret_value().encode()
        self.publisher = BatchPublisher(
            depth=self.queue_depth,
            record=self.ledger.record,
            forget=self.ledger.forget,
            send=self.send,
            published=lambda requests: slo.record(
                self._publishing.redis, "ingest", True, count=requests
            ),
            replicated=lambda: confirm_replicated(
                self._publishing.redis,
                self.settings.min_replicas,
                self.settings.ingest_replica_timeout_ms,
            ),
            batch_size=self.settings.classify_batch_size,
            max_queue=lambda: self.dynamic_config.get("max_ingest_queue_size"),
            linger_seconds=self.settings.ingest_linger_ms / 1000,
        )

    def close(self) -> None:
        """Close the publishing rounds' Redis pool (the app's own Runtime closes the rest)."""
        self._publishing.close()

    def authorised(self, given: str | None) -> bool:
        expected = self._expected_key
        if expected is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), expected)

    def queue_depth(self) -> int:
        depth = int(self._publishing.redis.llen(CLASSIFY_QUEUE))
        metrics.INGEST_QUEUE_DEPTH.set(depth)
        return depth

    def publish(self, events: list[Event]) -> None:
        """Return once ``events`` are in the ledger and on the broker (see :mod:`.publisher`)."""
        self.publisher.submit([orjson.Fragment(e.wire_json) for e in events])

    def send(self, batches: list[Batch]) -> None:
        """Publish one classify task per batch, all in one Redis pipeline."""
        with self.celery.producer_or_acquire() as producer, producer.batch():
            for batch in batches:
                self.celery.send_task(
                    CLASSIFY_TASK,
                    args=[batch.events, batch.batch_id],
                    producer=producer,
                    retry_policy=PUBLISH_RETRY_POLICY,
                    # The workers declare the queue; checking it again per message costs time.
                    declare=[],
                    # Celery would repr() every event for Flower; a summary is cheaper and clearer.
                    argsrepr=f"({len(batch.events)} events, batch {batch.batch_id})",
                )


def _ingestor() -> Ingestor:
    return current_app.extensions["mutt_ingest"]


def _answer(status: int, body: dict, reason: str, **headers: str) -> Response:
    if status < 300:
        _ACCEPTED_REQUESTS.inc()
    else:
        metrics.INGEST_REQUESTS.labels("fail", reason).inc()
    # Accepted requests are counted by the publisher, one write per round; a Redis failure cannot
    # be counted in Redis (see mutt_app.watch.slo).
    if status >= 300 and reason != "redis_unavailable":
        slo.record(_ingestor().redis, "ingest", False)
    data = orjson.dumps(body, option=_ANSWER_JSON)
    if data.isascii():
        response = current_app.response_class(data, status=status, mimetype="application/json")
    else:
        response = jsonify(body)
        response.status_code = status
    if headers:
        response.headers.update(headers)
    return response


@bp.post("/api/v2/ingest")
@bp.post("/ingest")
def ingest() -> Response:
    started = time.perf_counter()
    try:
        return _ingest(_ingestor())
    finally:
        metrics.INGEST_LATENCY.observe(time.perf_counter() - started)


def _drain(stream: BinaryIO, budget: int) -> None:
    """Read and drop up to ``budget`` bytes of a refused body, so that its sender gets the 413.

    A server that answers while the client is still sending closes the connection, and the client
    sees a reset, not the answer. A body longer still is left to that fate.
    """
    while budget > 0:
        chunk = stream.read(min(budget, 64 * 1024))
        if not chunk:
            return
        budget -= len(chunk)


def _refused_key(ingestor: Ingestor) -> Response | None:
    """The answer to a request whose X-API-Key is missing or wrong, or to an address that sent too
    many wrong ones (429, before its key is even compared); None when the key is good."""
    if ingestor.settings.ingest_api_key is None:
        return None
    given = request.headers.get("X-API-Key")
    good = ingestor.authorised(given)
    address = throttle.client_address()
    if good and ingestor.clear_addresses.fresh(address):
        return None
    wait = throttle.retry_after(throttle.INGEST_KEY)
    if wait is not None:
        ingestor.clear_addresses.forget(address)
        # No line per refusal (a guesser would flood the journal): the metrics count them, and
        # the throttle's start was logged.
        body = {"error": "too many bad X-API-Key values from this address; retry later"}
        return _answer(429, body, "auth_throttled", **{"Retry-After": str(wait)})
    if good:
        ingestor.clear_addresses.remember(address)
        return None
    ingestor.clear_addresses.forget(address)
    if given:  # a missing key is a misconfigured sender, not a guess
        if throttle.record_failure(throttle.INGEST_KEY):
            settings = ingestor.settings
            log.warning(
                "ingest: %s throttled: %d bad X-API-Key values within %d s",
                address,
                settings.webui_auth_ip_max_failures,
                settings.webui_auth_ip_window_seconds,
            )
        else:
            log.info("ingest request with a bad X-API-Key from %s", address)
    return _answer(401, {"error": "invalid or missing X-API-Key"}, "auth")


def _ingest(ingestor: Ingestor) -> Response:
    if (refused := _refused_key(ingestor)) is not None:
        return refused
    limit = ingestor.settings.max_ingest_body_bytes
    # Werkzeug stops reading a chunked body at the limit without saying whether more followed: let
    # it read one byte more, so that a longer body shows itself instead of being cut and parsed in
    # part.
    request.max_content_length = limit + 1
    try:
        body = request.get_data(cache=False)
        too_large = len(body) > limit
    except RequestEntityTooLarge:
        body, too_large = b"", True  # its Content-Length says so; nothing was read
    if too_large:
        _drain(request.environ["wsgi.input"], limit)
        log.info("ingest body refused (413): larger than %d bytes", limit)
        return _answer(413, {"error": f"body larger than {limit} bytes"}, "too_large")
    received_at = datetime.now(UTC)
    try:
        items = parse_body(
            body,
            content_encoding=request.headers.get("Content-Encoding"),
            content_type=request.headers.get("Content-Type"),
            max_bytes=limit,
        )
    except BodyError as exc:
        reason = "too_large" if exc.status == 413 else "invalid_body"
        log.info("ingest body refused (%d): %s", exc.status, exc)
        return _answer(exc.status, {"status": "rejected", "error": str(exc)}, reason)
    events, rejections = validate_items(
        items,
        required_fields=ingestor.settings.required_message_fields,
        received_at=received_at,
        event_time=ingestor.event_time,
    )
    rejected = [{"index": r.index, "error": r.error} for r in rejections]
    if rejections:
        _EVENTS_REJECTED.inc(len(rejected))
        # One line per request, naming the first reason: enough to find a misbehaving sender.
        first = rejections[0]
        log.info(
            "rejected %d of %d items; first: item %d: %s",
            len(rejections),
            len(items),
            first.index,
            first.error,
        )
    if not events:
        body = {"status": "rejected", "accepted": 0, "correlation_ids": [], "rejected": rejected}
        return _answer(422, body, "no_valid_events")

    try:
        ingestor.publish(events)
    except QueueFull:
        return _answer(
            503,
            {"error": "classify queue is full, retry later"},
            "queue_full",
            **{"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    except ReplicationShortfall:
        return _answer(
            503,
            {"error": "events not yet replicated, retry later"},
            "replication_shortfall",
            **{"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    except (redis.RedisError, BrokerError, BatchPublishError, OSError, PublishTimeout) as exc:
        log.error(
            "cannot enqueue %d events: %s: %s",
            len(events),
            type(exc).__name__,
            exc,
            extra=correlation([e.correlation_id for e in events]),
        )
        return _answer(
            503,
            {"error": "queue unavailable, retry later"},
            "redis_unavailable",
            **{"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    _EVENTS_ACCEPTED.inc(len(events))
    correlation_ids = [e.correlation_id for e in events]
    if (span := tracing.recording()) is not None:  # the request's span (Flask's instrumentation)
        span.set_attributes(
            {
                "mutt.events.accepted": len(events),
                "mutt.events.rejected": len(rejected),
                "mutt.correlation_ids": correlation_ids,
            }
        )
    # DEBUG: at thousands of requests a second a line per request would flood the journal; the
    # mutt_ingest_* metrics count them, and classify logs each batch with its correlation_ids.
    # Its log context is made only when the line is written.
    if log.isEnabledFor(logging.DEBUG):
        with log_context(**correlation(correlation_ids)):
            log.debug("accepted %d events, %d rejected", len(events), len(rejected))
    return _answer(
        200,
        {
            "status": "accepted",
            "accepted": len(events),
            "correlation_ids": correlation_ids,
            "rejected": rejected,
        },
        "",
    )


@bp.get("/health")
def health() -> Response:
    ingestor = _ingestor()
    body: dict = {
        "service": "mutt-ingest",
        "version": VERSION,
        "timestamp": datetime.now(UTC).isoformat(),
        # "open": no INGEST_API_KEY, by INGEST_ALLOW_OPEN; anyone who reaches it may post.
        "auth": "open" if ingestor.settings.ingest_api_key is None else "api-key",
    }
    try:
        ingestor.redis.ping()
        body.update(status="healthy", redis="connected", queue_depth=ingestor.queue_depth())
        status = 200
    except redis.RedisError as exc:
        body.update(status="unhealthy", redis=f"unreachable: {type(exc).__name__}")
        status = 503
    response = jsonify(body)
    response.status_code = status
    return response
