"""OpenTelemetry traces (OTEL_ENABLED): one trace per ingested batch, from the sender to Moog.

Off by default, and then nothing is installed: no tracer provider, no instrumentation, no exporter.
The few spans MUTT makes itself (the publishing round, the hold-back stages) and the attributes it
adds go through :data:`tracer` and :func:`recording`, which are the OpenTelemetry API's no-ops until a
provider is set; what costs a pass over a batch (its correlation ids) is computed only for a span
that records.

On, :func:`start` sets up the SDK once per process that does the work: the ingest and web apps in
their factories, a worker in the process that runs its tasks (a prefork worker's children, after the
fork: the exporter's thread and connections must be the child's own). What the maintained
instrumentations do is theirs: Flask (the request span, and the sender's W3C ``traceparent``),
Celery (a span per publish and per task run, the context carried in the message headers), requests
(the Moog request), SQLAlchemy and Redis. Spans go out over OTLP/HTTP in batches.

Everything else is configured the standard way and read by the SDK itself: the collector
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``..._TRACES_ENDPOINT``, ``..._HEADERS``, ``..._TIMEOUT``), the
service name (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``; default ``mutt-ingest``,
``mutt-web`` or ``mutt-worker``), sampling (``OTEL_TRACES_SAMPLER``), batching (``OTEL_BSP_*``),
propagation (``OTEL_PROPAGATORS``) and the Flask URLs left out (``OTEL_PYTHON_FLASK_EXCLUDED_URLS``;
default ``/health`` and ``/metrics``, which probes and Prometheus call all day).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    format_trace_id,
)

from mutt_app.config import VERSION, Settings

if TYPE_CHECKING:
    from celery import Celery
    from flask import Flask
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult
    from opentelemetry.trace import TraceState
    from opentelemetry.util.types import Attributes

log = logging.getLogger(__name__)

tracer = trace.get_tracer("mutt_app", VERSION)
"""The tracer of MUTT's own spans (a no-op until :func:`start` sets the provider)."""

# Probes and Prometheus call these all day; a trace each would bury the batches.
# (The full URL is matched: /api/v2/metrics, the dashboard's figures, stays traced.)
DEFAULT_FLASK_EXCLUDED_URLS = r"://[^/]+/(health|metrics)(\?.*)?$"

_started_in: int | None = None  # the pid of the process whose provider is set


def start(
    settings: Settings,
    service: str,
    *,
    flask_app: Flask | None = None,
    celery_app: Callable[[], Celery] | None = None,
) -> bool:
    """With OTEL_ENABLED, trace this process as ``service``: the SDK with its OTLP/HTTP exporter and
    the instrumentations, once per process; ``flask_app`` gets its request spans. ``celery_app``
    returns the app this process publishes tasks with (called only when on): its task modules are
    loaded so that the Celery instrumentation knows the tasks published by name and ends their
    publish spans. Returns whether tracing is on."""
    global _started_in
    if not settings.otel_enabled:
        return False
    if _started_in != os.getpid():
        _install_provider(service)
        _instrument_libraries()
        _started_in = os.getpid()
        log.info("OpenTelemetry tracing on for %s", service)
    if flask_app is not None:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        excluded = os.environ.get("OTEL_PYTHON_FLASK_EXCLUDED_URLS", DEFAULT_FLASK_EXCLUDED_URLS)
        FlaskInstrumentor.instrument_app(flask_app, excluded_urls=excluded)
    if celery_app is not None:
        # The instrumentation looks a published task up by name in the current app's registry; a
        # task it cannot find gets a publish span that is never ended (so never exported), and
        # the task's run would have a parent that no backend ever receives.
        celery_app().loader.import_default_modules()
    return True


def _install_provider(service: str) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({SERVICE_VERSION: VERSION})
    # OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) wins; Resource.create()
    # would let an attribute given here win over it.
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    # Before any tracer is made from it: each tracer takes the provider's sampler then.
    provider.sampler = _work_only(provider.sampler)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def _instrument_libraries() -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.logging import LoggingInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    for instrumentor in (CeleryInstrumentor(), RedisInstrumentor(), RequestsInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    logging_ = LoggingInstrumentor()
    if not logging_.is_instrumented_by_opentelemetry:
        # The trace and span ids on every log record (mutt_app.logs shows them); not its handler
        # that would also send each log line over OTLP.
        logging_.instrument(inject_trace_context=True, enable_log_auto_instrumentation=False)
    sqlalchemy = SQLAlchemyInstrumentor()
    if not sqlalchemy.is_instrumented_by_opentelemetry:
        # It wraps sqlalchemy.create_engine (mutt_app.db.engine calls it through the module). Its
        # declared range stops short of SQLAlchemy 2.1, which it traces as it does 2.0 (the e2e
        # test sees the SQL of the audit's transaction; it needs greenlet, setup.cfg); without
        # the skip it would refuse and trace no SQL.
        sqlalchemy.instrument(skip_dep_check=True)


def _work_only(inner: Sampler) -> Sampler:
    """``inner`` (the configured sampler), except that a client span without a parent is dropped.

    A worker's own housekeeping talks to Redis all the time outside any task (the broker's
    scans and acknowledgements, the lease renewals of :mod:`mutt_app.redelivery`), and so does a
    health check that is not traced itself; each command would be a trace of its own and bury
    the batches. Work starts with a request, a task run or a
    publish, never with a client call.
    """
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class WorkOnly(Sampler):
        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Attributes = None,
            links: Sequence[Link] | None = None,
            trace_state: TraceState | None = None,
        ) -> SamplingResult:
            if kind is SpanKind.CLIENT:
                parent = trace.get_current_span(parent_context).get_span_context()
                if not parent.is_valid:
                    return SamplingResult(Decision.DROP)
            return inner.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return f"WorkOnly{{{inner.get_description()}}}"

    return WorkOnly()


def recording() -> Span | None:
    """The current span if it records (tracing on, sampled), else None: set what costs a pass
    over a batch only then."""
    span = trace.get_current_span()
    return span if span.is_recording() else None


def trace_id() -> str | None:
    """The current trace's id, 32 hex digits as in ``traceparent``, while a span records; else
    None (tracing off, or not sampled: no trace to find)."""
    span = trace.get_current_span()
    return format_trace_id(span.get_span_context().trace_id) if span.is_recording() else None


def origin() -> SpanContext:
    """The current span's context, to carry work to another thread (invalid when none)."""
    return trace.get_current_span().get_span_context()


def following(origins: Sequence[SpanContext]) -> dict[str, Any]:
    """``start_span`` arguments for work done on behalf of ``origins`` (contexts from
    :func:`origin`, in order): the first valid one is the parent, the others are linked."""
    valid = [o for o in origins if o.is_valid]
    if not valid:
        return {}
    return {
        "context": trace.set_span_in_context(NonRecordingSpan(valid[0])),
        "links": [Link(o) for o in valid[1:]],
    }
