"""Schemathesis against the web app served by gunicorn over real HTTP, on real PostgreSQL (and on
the embedded SQLite default) and a real Redis: requests generated from the OpenAPI description, with
and without a key, never get a 5xx, and every answer fits the description (status, content type,
headers, schema and formats: a date-time must carry an offset).

The stores are seeded first (a rule, a development host, a team, event audit rows, a dead letter),
so that list answers carry real rows, timestamps included, for the schema check to read.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.orm import Session

from mutt_app.config import load_settings
from mutt_app.db.engine import make_engine, upgrade
from mutt_app.forwarding.deadletters import add_dead_letter
from tests.e2e.stack import Stack
from tests.factories import CRITICAL, event_audit_rows

KEY = "fuzz-key-0123456789"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# A request that fits the description may still be refused as 422 (a regex RE2 refuses, a rule with
# no criterion, a change with no reason given as a header): rules no schema can state. Never 400.
ACCEPTED = ["2xx", "401", "403", "404", "409", "422", "429"]
# Where a well-formed query may still be 400 for a reason no schema states (an opaque cursor the API
# did not issue; a start_date after the end_date), valid requests are not required to succeed.
QUERY_RULES_BEYOND_SCHEMA = {"/audit-logs", "/config-audit"}
# Examples per operation: enough to reach every field's bounds, few enough that both databases
# take well under two minutes on a small CI machine.
KEYED_EXAMPLES = 12
KEYLESS_EXAMPLES = 3


@pytest.fixture(params=["postgresql", "sqlite"])
def web(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Iterator[str]:
    """The web app under gunicorn on the given database, seeded; yields its base URL."""
    env = {
        "REDIS_URL": redis_url,
        "MUTT_DATA_DIR": str(tmp_path / "data"),
        "WEBUI_API_KEY": KEY,
        "PROMETHEUS_URL": "http://127.0.0.1:1",  # none: the SLO report falls back to Redis
        "LOG_LEVEL": "WARNING",
    }
    if request.param == "postgresql":
        env["DATABASE_URL"] = request.getfixturevalue("pg_url")
    engine = make_engine(load_settings(env))
    stack = Stack(env, tmp_path)
    try:
        if request.param == "sqlite":
            upgrade(engine)
        stack.start_web()
        _seed(stack.web_url, engine)
        yield stack.web_url
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()
        engine.dispose()


def _seed(url: str, engine) -> None:  # type: ignore[no-untyped-def]
    headers = {"X-API-Key": KEY, "X-Change-Reason": "fuzz seed"}
    for path, body in (
        ("/rules", CRITICAL),
        ("/dev-hosts", {"hostname": "dev-1", "description": "lab"}),
        ("/teams", {"hostname": "core-1", "team_assignment": "WAN"}),
    ):
        answer = requests.post(f"{url}/api/v2{path}", json=body, headers=headers, timeout=10)
        assert answer.status_code == 201, answer.text
    event_audit_rows(engine, datetime(2026, 3, 1, 12, tzinfo=UTC))
    with Session(engine) as session, session.begin():
        add_dead_letter(
            session,
            task_name="mutt.forward_to_moog",
            queue="mutt.forward",
            payload={"alert": {"external_id": "6c442ed1-19ae-4c1b-9ecf-a3d7efc6d89a"}},
            error="Moog answered 400",
            backoff_base=60,
        )


def _run(operation, mode: GenerationMode, headers: dict[str, str], examples: int) -> None:  # type: ignore[no-untyped-def]
    checks = list(CHECKS)
    if mode is GenerationMode.POSITIVE and operation.path not in QUERY_RULES_BEYOND_SCHEMA:
        checks.append(positive_data_acceptance)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=checks, timeout=30)

    try:
        run()
    except Unsatisfiable:
        # Negative mode finds nothing to break in an operation with no parameters or body.
        assert (
            mode is GenerationMode.NEGATIVE
            and not operation.definition.raw.get("parameters")
            and "requestBody" not in operation.definition.raw
        ), operation.path


@pytest.mark.slow
def test_generated_requests_get_documented_answers_and_no_5xx(web: str) -> None:
    """Positive: requests that fit the description; negative: requests that break it somewhere;
    each with the admin key and with no key at all (401 everywhere but the description)."""
    schema = schemathesis.openapi.from_url(f"{web}/api/v2/openapi.json")
    schema.config.checks.positive_data_acceptance.expected_statuses = ACCEPTED
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode, headers, examples in (
            (GenerationMode.POSITIVE, {"X-API-Key": KEY}, KEYED_EXAMPLES),
            (GenerationMode.NEGATIVE, {"X-API-Key": KEY}, KEYED_EXAMPLES),
            (GenerationMode.POSITIVE, {}, KEYLESS_EXAMPLES),
        ):
            try:
                _run(operation, mode, headers, examples)
            # Collect every operation's first failure, then fail once (schemathesis reports its
            # failures as a BaseExceptionGroup).
            except (Exception, BaseExceptionGroup) as exc:
                keyed = "with a key" if headers else "without a key"
                failures.append(
                    f"{operation.method.upper()} {operation.path} ({mode.value}, {keyed}): {exc}"
                )
    assert not failures, "\n\n".join(failures)
