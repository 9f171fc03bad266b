"""Schemathesis against the app (in process, real PostgreSQL and Redis): requests generated from the
OpenAPI description never get a 500, and every answer fits the description (status, content type,
schema).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mutt_app.config import Settings
from mutt_app.web import create_app
from tests.conftest import close_web_app

KEY = "fuzz-key-0123456789"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(
        settings.model_copy(
            update={"webui_api_key": SecretStr(KEY), "prometheus_url": "http://127.0.0.1:1"}
        )
    )
    try:
        yield app
    finally:
        close_web_app(app)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_get_documented_answers_and_no_500(
    app: Flask, mode: GenerationMode
) -> None:
    """Positive: requests that fit the description; negative: requests that break it somewhere."""
    schema = schemathesis.openapi.from_wsgi("/api/v2/openapi.json", app)
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=30,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(headers={"X-API-Key": KEY}, checks=CHECKS)

        try:
            run()
        except Unsatisfiable:
            # Negative mode finds nothing to break in an operation with no parameters or body.
            assert (
                mode is GenerationMode.NEGATIVE
                and not operation.definition.raw.get("parameters")
                and "requestBody" not in operation.definition.raw
            ), operation.path
        except Exception as exc:  # collect every operation's first failure, then fail once
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
