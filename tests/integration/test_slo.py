"""The SLO report (GET /api/v1/slo, /api/v2/slo) from Prometheus and from MUTT's own counters.

Prometheus is a small real HTTP server speaking its query API (tests/prometheus_server.py); the
fallback counts come from the real ingest app writing to the real Redis.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr

from mutt_app.config import Settings
from mutt_app.watch import slo
from mutt_app.web import create_app, create_ingest_app
from tests.conftest import close_web_app
from tests.prometheus_server import PrometheusServer

KEY = "slo-test-key-0123456789"
AUTH = {"X-API-Key": KEY}
INGEST_KEY = "ingest-key-0123456789"
NOWHERE = "http://127.0.0.1:1"  # nothing listens: Prometheus "does not answer"


def _web(settings: Settings, prometheus_url: str) -> Flask:
    app = create_app(
        settings.model_copy(
            update={"webui_api_key": SecretStr(KEY), "prometheus_url": prometheus_url}
        )
    )
    app.testing = True
    return app


@pytest.fixture
def prometheus() -> Iterator[PrometheusServer]:
    with PrometheusServer() as server:
        yield server


@pytest.fixture
def fallback_client(settings: Settings) -> Iterator[FlaskClient]:
    app = _web(settings, NOWHERE)
    try:
        yield app.test_client()
    finally:
        close_web_app(app)


def _slo(client: FlaskClient, path: str = "/api/v1/slo", status: int = 200) -> dict:
    response = client.get(path, headers=AUTH)
    assert response.status_code == status, response.json
    assert response.headers["X-API-Version"] == "2"
    return response.json


def test_from_prometheus_with_the_specs_metrics_budget_and_burn_rate(
    settings: Settings, prometheus: PrometheusServer
) -> None:
    prometheus.series = {
        "mutt_ingest_requests_total": [
            ({"status": "success", "reason": ""}, 9950.0),
            ({"status": "fail", "reason": "auth"}, 30.0),
            ({"status": "fail", "reason": "queue_full"}, 20.0),
        ],
        "mutt_moog_requests_total": [
            ({"status": "success", "reason": ""}, 970.0),
            ({"status": "fail", "reason": "500"}, 30.0),
        ],
    }
    app = _web(settings, prometheus.url)
    try:
        report = _slo(app.test_client())
        assert _slo(app.test_client(), "/api/v2/slo")["slos"] == report["slos"]
    finally:
        close_web_app(app)

    ingest = report["slos"]["ingest_availability"]
    assert ingest["source"] == "prometheus" and ingest["target"] == 0.995
    assert (ingest["good"], ingest["total"]) == (9950, 10000)
    assert ingest["actual"] == pytest.approx(0.995)
    assert ingest["burn_rate"] == pytest.approx(1.0) and ingest["status"] == "ok"
    assert ingest["error_budget"] == pytest.approx(0.005)
    assert ingest["error_budget_remaining"] == pytest.approx(0.0, abs=1e-6)
    assert ingest["compliant"] is True

    forward = report["slos"]["forward_availability"]
    assert forward["source"] == "prometheus" and forward["target"] == 0.99
    assert forward["actual"] == pytest.approx(0.97)
    assert forward["burn_rate"] == pytest.approx(3.0) and forward["status"] == "critical"
    assert forward["error_budget_remaining"] == pytest.approx(-2.0)
    assert forward["compliant"] is False
    assert report["overall_compliant"] is False and report["window_hours"] == 24
    assert report["fallback_reasons"] == {}
    assert 'sum(increase(mutt_ingest_requests_total{status="success"}[24h]))' in prometheus.queries
    assert "sum(increase(mutt_moog_requests_total[24h]))" in prometheus.queries


def test_window_and_targets_come_from_the_dynamic_config(
    settings: Settings, prometheus: PrometheusServer
) -> None:
    prometheus.series = {
        "mutt_ingest_requests_total": [({"status": "success"}, 98.0), ({"status": "fail"}, 2.0)],
        "mutt_moog_requests_total": [({"status": "success"}, 10.0)],
    }
    app = _web(settings, prometheus.url)
    try:
        client = app.test_client()
        changed = client.put(
            "/api/v2/config",
            json={"slo_window_hours": 6, "slo_ingest_success_target": 0.96, "reason": "test"},
            headers=AUTH,
        )
        assert changed.status_code == 200, changed.json
        report = _slo(client)
        assert report["window_hours"] == 6
        ingest = report["slos"]["ingest_availability"]
        assert ingest["target"] == 0.96 and ingest["burn_rate"] == pytest.approx(0.5)
        assert ingest["status"] == "ok" and ingest["error_budget_remaining"] == pytest.approx(0.5)
        assert "sum(increase(mutt_ingest_requests_total[6h]))" in prometheus.queries
        assert _slo(client, "/api/v1/slo?window_hours=48")["window_hours"] == 48
        for bad in ("0", "721", "day"):
            error = _slo(client, f"/api/v1/slo?window_hours={bad}", status=400)
            assert error["details"]["parameter"] == "window_hours"
    finally:
        close_web_app(app)


def test_a_failing_prometheus_falls_back_to_mutt_counters(
    settings: Settings, prometheus: PrometheusServer, redis_client: redis.Redis
) -> None:
    for success in (True, True, True, False):
        slo.record(redis_client, "ingest", success)
    prometheus.fail_with = 503
    app = _web(settings, prometheus.url)
    try:
        report = _slo(app.test_client())
    finally:
        close_web_app(app)
    ingest = report["slos"]["ingest_availability"]
    assert ingest["source"] == "mutt_counters" and (ingest["good"], ingest["total"]) == (3, 4)
    assert ingest["actual"] == 0.75 and ingest["status"] == "critical"
    assert "answered 503" in report["fallback_reasons"]["ingest_availability"]
    assert len(prometheus.queries) == 1  # once down, not asked again for the next SLO


def test_an_slo_prometheus_has_no_series_for_comes_from_the_counters(
    settings: Settings, prometheus: PrometheusServer, redis_client: redis.Redis
) -> None:
    prometheus.series = {"mutt_ingest_requests_total": [({"status": "success"}, 5.0)]}
    slo.record(redis_client, "forward", True)
    slo.record(redis_client, "forward", False)
    app = _web(settings, prometheus.url)
    try:
        report = _slo(app.test_client())
    finally:
        close_web_app(app)
    assert report["slos"]["ingest_availability"]["source"] == "prometheus"
    forward = report["slos"]["forward_availability"]
    assert forward["source"] == "mutt_counters" and forward["actual"] == 0.5
    assert report["fallback_reasons"] == {
        "forward_availability": "Prometheus has no mutt_moog_requests_total series"
    }


def test_fallback_counts_what_the_real_ingest_app_answered(
    settings: Settings, fallback_client: FlaskClient
) -> None:
    ingest = create_ingest_app(
        settings.model_copy(update={"ingest_api_key": SecretStr(INGEST_KEY)})
    )
    ingest_client = ingest.test_client()
    event = {"timestamp": "2026-03-01T12:00:00Z", "message": "up", "hostname": "r1"}
    try:
        for _ in range(3):
            ok = ingest_client.post("/api/v2/ingest", json=event, headers={"X-API-Key": INGEST_KEY})
            assert ok.status_code == 200, ok.json
        assert ingest_client.post("/api/v2/ingest", json=event).status_code == 401
        bad = ingest_client.post(
            "/api/v2/ingest", json={"hostname": "x"}, headers={"X-API-Key": INGEST_KEY}
        )
        assert bad.status_code == 422
    finally:
        ingest.extensions["mutt_ingest"].redis.close()

    report = _slo(fallback_client)
    answer = report["slos"]["ingest_availability"]
    assert answer["source"] == "mutt_counters"
    assert (answer["good"], answer["total"], answer["actual"]) == (3, 5, 0.6)
    assert "127.0.0.1:1" in report["fallback_reasons"]["ingest_availability"]
    forward = report["slos"]["forward_availability"]
    assert (forward["total"], forward["actual"], forward["status"]) == (0, None, "no_data")
    assert forward["compliant"] is True and forward["burn_rate"] == 0


def test_counter_buckets_are_hourly_and_outside_the_window_is_not_counted(
    redis_client: redis.Redis,
) -> None:
    now = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    slo.record(redis_client, "forward", True, now)
    slo.record(redis_client, "forward", False, now - timedelta(hours=23))
    slo.record(redis_client, "forward", False, now - timedelta(hours=24))  # the 25th bucket
    assert slo.counted(redis_client, "forward", 24, now) == (1, 2)
    assert slo.counted(redis_client, "forward", 25, now) == (1, 3)
    assert slo.counted(redis_client, "ingest", 24, now) == (0, 0)
    ttl = redis_client.ttl("mutt:slo:forward:2026030112")
    assert slo.BUCKET_TTL_SECONDS - 5 < ttl <= slo.BUCKET_TTL_SECONDS


def test_recording_never_raises_when_redis_is_down() -> None:
    client = redis.Redis.from_url(NOWHERE.replace("http", "redis"), socket_connect_timeout=0.5)
    assert slo.record(client, "ingest", True) is False


def test_report_is_503_when_prometheus_and_redis_are_both_down(settings: Settings) -> None:
    app = _web(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}), NOWHERE)
    try:
        error = _slo(app.test_client(), status=503)
    finally:
        close_web_app(app)
    assert set(error) == {"error", "details"} and "Redis" in error["error"]


@pytest.mark.parametrize(
    ("target", "good", "total", "burn", "status"),
    [
        (0.99, 990, 1000, 1.0, "ok"),
        (0.99, 985, 1000, 1.5, "warning"),
        (0.99, 979, 1000, 2.1, "critical"),
        (1.0, 1000, 1000, 0.0, "ok"),
        (1.0, 999, 1000, math.inf, "critical"),
    ],
)
def test_burn_rate_thresholds(
    target: float, good: int, total: int, burn: float, status: str
) -> None:
    objective = slo.Objective(target, good, total, "test")
    assert objective.burn_rate == pytest.approx(burn)
    assert objective.status == status
    shown = objective.as_dict()
    assert shown["burn_rate"] == (None if math.isinf(burn) else pytest.approx(burn))
