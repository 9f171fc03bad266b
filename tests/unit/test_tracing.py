"""mutt_app.tracing: off installs nothing; a round's span follows its requests (parent and links).

The traces themselves, from real processes to an OTLP receiver, are tests/e2e/test_tracing.py.
"""

from __future__ import annotations

from flask import Flask
from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanContext, TraceFlags

from mutt_app import tracing
from mutt_app.config import load_settings


def _context(trace_id: int, span_id: int) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1))


def test_off_by_default_nothing_is_installed() -> None:
    app = Flask("off")
    wsgi = app.wsgi_app
    asked = []

    on = tracing.start(
        load_settings({}), "mutt-test", flask_app=app, celery_app=lambda: asked.append(1)
    )

    assert on is False
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert app.wsgi_app == wsgi and asked == []
    for instrumentor in (
        CeleryInstrumentor(),
        RedisInstrumentor(),
        RequestsInstrumentor(),
        SQLAlchemyInstrumentor(),
    ):
        assert not instrumentor.is_instrumented_by_opentelemetry, instrumentor
    assert tracing.recording() is None
    assert not tracing.origin().is_valid


def test_a_round_is_the_child_of_its_first_traced_request_and_links_the_others() -> None:
    first, second, third = _context(1, 11), _context(2, 22), _context(3, 33)

    following = tracing.following(
        [INVALID_SPAN_CONTEXT, first, second, INVALID_SPAN_CONTEXT, third]
    )

    assert trace.get_current_span(following["context"]).get_span_context() == first
    assert [link.context for link in following["links"]] == [second, third]
    assert tracing.following([INVALID_SPAN_CONTEXT]) == {}
