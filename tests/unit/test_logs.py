"""Log formatting: the spec's JSON fields, readable plain lines, and secrets masked wherever they are."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from mutt_app.config import Settings, load_settings
from mutt_app.logs import (
    MAX_LISTED_IDS,
    QUIET_LOGGERS,
    ContextFilter,
    configure_logging,
    correlation,
    log_context,
    make_formatter,
)

SECRETS = {
    "INGEST_API_KEY": "ingest-Key-1234",
    "MOOG_API_KEY": 'moog"key\\with-quotes',
    "DB_PASS_CURRENT": "db-current-pw",
    "REDIS_PASSWORD": "redis-pw-5678",
}
VAULT_TOKEN = "hvs.CAESIJlU8Qd2n5xq0oN3aB7cYzW4vE1kR6tH9mPfLsGuD2jXA"


def _logger(settings: Settings, service: str = "mutt-test") -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter(settings))
    handler.addFilter(ContextFilter(service, "pod-7"))
    logger = logging.getLogger(f"mutt.test.{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


@pytest.fixture(params=["json", "plain"])
def output(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, io.StringIO, bool]]:
    json_on = request.param == "json"
    settings = load_settings({**SECRETS, "LOG_JSON_ENABLED": str(json_on).lower()})
    logger, stream = _logger(settings)
    yield logger, stream, json_on


def test_json_lines_carry_the_spec_fields_and_the_context() -> None:
    logger, stream = _logger(load_settings({"LOG_JSON_ENABLED": "true"}))
    with log_context(correlation_id="550e8400-e29b-41d4-a716-446655440000", batch_id="b1"):
        logger.info("event %s processed", "one")
    logger.warning("outside")

    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "event one processed"
    assert first["level"] == "INFO"
    assert first["logger"].startswith("mutt.test.")
    assert first["module"] == "test_logs"
    assert first["function"] == "test_json_lines_carry_the_spec_fields_and_the_context"
    assert isinstance(first["line"], int)
    assert first["thread"] == "MainThread"
    assert (first["service"], first["version"], first["pod_name"]) == (
        "mutt-test",
        "2.5.0",
        "pod-7",
    )
    assert first["correlation_id"] == "550e8400-e29b-41d4-a716-446655440000"
    assert first["batch_id"] == "b1"
    assert first["task_id"] is None
    assert first["trace_id"] is None and first["span_id"] is None  # tracing off
    assert first["timestamp"].endswith("+00:00")
    assert second["correlation_id"] is None and "batch_id" not in second


def test_json_lines_carry_the_current_span_s_trace_and_span_ids_when_traced() -> None:
    # What mutt_app.tracing installs with OTEL_ENABLED, on a provider of this test's own.
    from opentelemetry.instrumentation.logging import LoggingInstrumentor
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    logger, stream = _logger(load_settings({"LOG_JSON_ENABLED": "true"}))
    instrumentor = LoggingInstrumentor()
    instrumentor.instrument(inject_trace_context=True, enable_log_auto_instrumentation=False)
    try:
        with tracer.start_as_current_span("work") as span:
            logger.info("inside")
        logger.info("outside")
    finally:
        instrumentor.uninstrument()

    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    context = span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert (outside["trace_id"], outside["span_id"]) == (None, None)
    assert not [key for key in inside if key.startswith("otel")]  # shown once, by MUTT's names


def test_plain_lines_are_readable_and_show_the_ids() -> None:
    logger, stream = _logger(load_settings({}))
    with log_context(correlation_id="c-1"):
        logger.info("accepted %d events", 3)
    logger.info("no context")
    first, second = stream.getvalue().splitlines()
    assert first.endswith(
        "INFO    mutt-test " + logger.name + ": accepted 3 events [correlation_id=c-1]"
    )
    assert second.endswith(": no context")


def test_many_ids_are_listed_and_one_is_the_correlation_id() -> None:
    assert correlation(["a"]) == {"correlation_id": "a"}
    assert correlation(["a", "b"]) == {"correlation_ids": ["a", "b"]}
    assert correlation([]) == {}
    many = correlation([str(i) for i in range(MAX_LISTED_IDS + 50)])["correlation_ids"]
    assert len(many) == MAX_LISTED_IDS + 1 and many[-1] == f"... {MAX_LISTED_IDS + 50} in all"


def test_no_configured_secret_reaches_the_output(
    output: tuple[logging.Logger, io.StringIO, bool],
) -> None:
    logger, stream, json_on = output
    logger.info("connecting with key %s", SECRETS["INGEST_API_KEY"])
    logger.info("moog said no to %s", SECRETS["MOOG_API_KEY"])
    logger.info("extra field", extra={"password": SECRETS["DB_PASS_CURRENT"]})
    try:
        raise ConnectionError(f"AUTH failed for redis://:{SECRETS['REDIS_PASSWORD']}@cache:6379/0")
    except ConnectionError:
        logger.exception("redis is down")
    logger.info("vault token %s renewed", VAULT_TOKEN)
    logger.info("database at postgresql://mutt:hunter2-not-configured@db:5432/mutt_db")

    text = stream.getvalue()
    for secret in [*SECRETS.values(), VAULT_TOKEN, "hunter2-not-configured"]:
        assert secret not in text
        assert json.dumps(secret)[1:-1] not in text
    assert "***" in text
    assert "postgresql://mutt:***@db:5432/mutt_db" in text
    assert "redis is down" in text and "Traceback" in text
    if json_on:
        for line in text.splitlines():
            json.loads(line)  # masking never breaks a JSON line


def test_uuids_and_ordinary_words_are_not_masked() -> None:
    logger, stream = _logger(load_settings({"LOG_JSON_ENABLED": "true", **SECRETS}))
    logger.info("event 550e8400-e29b-41d4-a716-446655440000 from s.example.com, https://moog/x")
    assert (
        "550e8400-e29b-41d4-a716-446655440000 from s.example.com, https://moog/x"
        in (json.loads(stream.getvalue())["message"])
    )


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger, put back as it was after the test configures it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in quiet.items():
        logging.getLogger(name).setLevel(saved)


def test_alembic_plugin_roll_call_is_quiet_but_migrations_are_still_logged(
    root_logging: logging.Logger,
) -> None:
    configure_logging(load_settings({"LOG_LEVEL": "INFO"}), service="mutt-cli")
    assert root_logging.isEnabledFor(logging.INFO)
    assert not logging.getLogger("alembic.runtime.plugins").isEnabledFor(logging.INFO)
    assert logging.getLogger("alembic.runtime.migration").isEnabledFor(logging.INFO)
