"""The SLO report (GET /api/v1/slo, /api/v2/slo) from Prometheus and from MUTT's own counters.

Prometheus is the real one (tests/prometheus.py), scraping a live stack's /metrics pages (gunicorn
ingest, a celery worker) with the deploy kit's rules loaded; the fallback counts come from the real
ingest app writing to the real Redis.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
import requests
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr

from mutt_app.config import Settings
from mutt_app.watch import slo
from mutt_app.web import create_app, create_ingest_app
from tests.conftest import close_web_app
from tests.e2e.stack import Stack, StackFactory
from tests.factories import posted_event, seed_pipeline
from tests.prometheus import Prometheus
from tests.services import wait_for

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


def _report(settings: Settings, prometheus: Prometheus) -> dict:
    app = _web(settings, prometheus.url)
    try:
        report = _slo(app.test_client())
        again = _slo(app.test_client(), "/api/v2/slo")
    finally:
        close_web_app(app)
    # The same report from v2; its counts a moment later (Prometheus extrapolates to the moment).
    for name, objective in report["slos"].items():
        assert again["slos"][name]["source"] == objective["source"]
        actual = objective["actual"]
        assert again["slos"][name]["actual"] == (actual and pytest.approx(actual, abs=1e-9))
    return report


def _post(stack: Stack, message: str, key: str = INGEST_KEY) -> int:
    body = json.dumps([posted_event(message, hostname="slo-router")])
    headers = {"Content-Type": "application/json", "X-API-Key": key}
    return stack.post(body, **headers).status_code


def _post_invalid(stack: Stack) -> int:
    headers = {"Content-Type": "application/json", "X-API-Key": INGEST_KEY}
    return stack.post(json.dumps([{"hostname": "no-message"}]), **headers).status_code


def _scraped(prometheus: Prometheus, expr: str, value: float) -> None:
    """Wait until Prometheus has scraped ``expr`` at ``value`` (the stack's final count)."""
    wait_for(lambda: prometheus.value(expr) == value, 15, f"{expr} == {value} in Prometheus")


def _extrapolated(answer: float, counted: int) -> bool:
    """Whether Prometheus' increase() is ``counted``, give or take its extrapolation.

    Every series starts at 0 (the counters' labels are initialised), so increase() extrapolates
    only past the last sample, by at most half a scrape interval over at least one: x1 to x1.5.
    """
    return counted <= answer <= counted * 1.5 + 1e-9


@pytest.mark.slow
def test_from_prometheus_scraping_a_live_stack(
    settings: Settings, make_stack: StackFactory, redis_client: redis.Redis
) -> None:
    stack = make_stack(INGEST_API_KEY=INGEST_KEY)
    seed_pipeline(stack.engine)
    jobs = {
        "mutt-ingest": [f"127.0.0.1:{stack.ingest_port}"],
        "mutt-worker": [f"127.0.0.1:{stack.metrics_port}"],
    }
    with Prometheus(jobs) as prometheus:  # first: it takes seconds to pick its targets up
        stack.start_sink().start_ingest()
        stack.start_worker()
        prometheus.wait_scraped()  # every counter seen at 0 before any traffic
        for i in range(3):
            assert _post(stack, f"CRITICAL link {i} down") == 200
        assert _post(stack, "CRITICAL wrong key", key="not-the-key") == 401
        assert _post_invalid(stack) == 422
        stack.wait_sink(3)
        good, total = slo.counted(redis_client, "forward", 2)  # what the forward task counted
        assert good == total >= 1
        _scraped(prometheus, "sum(mutt_ingest_requests_total)", 5)
        _scraped(prometheus, "sum(mutt_moog_requests_total)", total)

        report = _report(settings, prometheus)

        ingest = report["slos"]["ingest_availability"]
        assert ingest["source"] == "prometheus" and ingest["target"] == 0.995
        # Every answer that is not a success counts against availability: 3 of 5.
        assert ingest["actual"] == pytest.approx(0.6)
        assert _extrapolated(ingest["total"], 5) and _extrapolated(ingest["good"], 3)
        assert ingest["burn_rate"] == pytest.approx(0.4 / 0.005)
        assert ingest["status"] == "critical" and ingest["compliant"] is False
        # The same requests as MUTT's own counters saw.
        assert slo.counted(redis_client, "ingest", 2) == (3, 5)

        forward = report["slos"]["forward_availability"]
        assert forward["source"] == "prometheus" and forward["actual"] == 1.0
        assert _extrapolated(forward["total"], total) and forward["status"] == "ok"
        assert report["overall_compliant"] is False and report["window_hours"] == 24
        assert report["fallback_reasons"] == {}
        asked = prometheus.queries()
        assert 'sum(increase(mutt_ingest_requests_total{status="success"}[24h]))' in asked
        assert "sum(increase(mutt_ingest_requests_total[24h]))" in asked
        assert "sum(increase(mutt_moog_requests_total[24h]))" in asked

        # The deploy kit's recording rules, on the same data: a 401 or a 422 is the sender's fault
        # and costs no error budget there, and every alert was delivered. A rule evaluated before the
        # scrape that saw the traffic gives 0/0 (NaN): wait for one evaluated after it.
        ratios = ("mutt:ingest_error_ratio:rate5m", "mutt:forward_error_ratio:rate5m")
        wait_for(
            lambda: all(_a_number(prometheus.value(ratio)) for ratio in ratios),
            10,
            "the recording rules evaluated on the traffic",
        )
        assert prometheus.value("mutt:ingest_error_ratio:rate5m") == 0
        assert prometheus.value("mutt:forward_error_ratio:rate5m") == 0


@pytest.mark.slow
def test_a_shedding_ingest_burns_the_budget_in_the_report_and_the_alert_rules(
    settings: Settings, make_stack: StackFactory
) -> None:
    # No worker: the classify queue fills up after two requests, and ingest answers 503.
    stack = make_stack(INGEST_API_KEY=INGEST_KEY, MAX_INGEST_QUEUE_SIZE="2")
    with Prometheus({"mutt-ingest": [f"127.0.0.1:{stack.ingest_port}"]}) as prometheus:
        stack.start_ingest()
        prometheus.wait_scraped()
        answers = [_post(stack, f"CRITICAL fan {i} failed") for i in range(5)]
        accepted, shed = answers.count(200), answers.count(503)
        assert accepted >= 1 and shed >= 1 and answers == [200] * accepted + [503] * shed
        _scraped(prometheus, "sum(mutt_ingest_requests_total)", 5)

        app = _web(settings, prometheus.url)
        try:
            client = app.test_client()
            changed = client.put(
                "/api/v2/config",
                json={"slo_window_hours": 6, "slo_ingest_success_target": 0.4, "reason": "test"},
                headers=AUTH,
            )
            assert changed.status_code == 200, changed.json
            report = _slo(client)
        finally:
            close_web_app(app)

        assert report["window_hours"] == 6
        ingest = report["slos"]["ingest_availability"]
        assert ingest["source"] == "prometheus" and ingest["target"] == 0.4
        assert ingest["actual"] == pytest.approx(accepted / 5)
        assert ingest["burn_rate"] == pytest.approx(shed / 5 / 0.6)
        assert ingest["compliant"] is (accepted / 5 >= 0.4)
        assert "sum(increase(mutt_ingest_requests_total[6h]))" in prometheus.queries()
        # The forward counter is served at 0 by ingest too: Prometheus has it, with no requests.
        forward = report["slos"]["forward_availability"]
        assert (forward["source"], forward["status"]) == ("prometheus", "no_data")

        # The deploy kit's fast-burn alert fires on the same data (503s are ingest's fault).
        def burning() -> bool:
            alerts = prometheus.api("alerts")["alerts"]
            return any(
                a["labels"]["alertname"] == "MuttIngestSLOBurnFast" and a["state"] == "firing"
                for a in alerts
            )

        wait_for(burning, 15, "MuttIngestSLOBurnFast firing", interval=0.2)
        assert prometheus.value("mutt:ingest_error_ratio:rate5m") == pytest.approx(shed / 5)


def _queries_answered(prometheus: Prometheus) -> float:
    """How many instant queries Prometheus was sent, from its own /metrics page."""
    page = requests.get(f"{prometheus.url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in page.splitlines()
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line
    )


def test_an_overloaded_prometheus_falls_back_to_mutt_counters(
    settings: Settings, redis_client: redis.Redis
) -> None:
    # A real 503: no query slot is ever free, so each query times out in Prometheus' queue.
    for success in (True, True, True, False):
        slo.record(redis_client, "ingest", success)
    options = ("--query.max-concurrency=0", "--query.timeout=1s")
    with Prometheus({}, rules=False, options=options) as prometheus:
        report = _report(settings, prometheus)
        asked = _queries_answered(prometheus)

    ingest = report["slos"]["ingest_availability"]
    assert ingest["source"] == "mutt_counters" and (ingest["good"], ingest["total"]) == (3, 4)
    assert ingest["actual"] == 0.75 and ingest["status"] == "critical"
    reason = report["fallback_reasons"]["ingest_availability"]
    assert "answered 503: query timed out in query queue" in reason
    assert report["fallback_reasons"]["forward_availability"] == reason
    # Once down, not asked again for the next SLO: one query per report (v1, then v2).
    assert asked == 2


def test_an_slo_prometheus_has_no_series_for_comes_from_the_counters(
    settings: Settings, redis_client: redis.Redis
) -> None:
    # A Prometheus that scrapes no MUTT process (yet): it answers, with nothing.
    slo.record(redis_client, "forward", True)
    slo.record(redis_client, "forward", False)
    with Prometheus({}, rules=False) as prometheus:
        report = _report(settings, prometheus)
    forward = report["slos"]["forward_availability"]
    assert forward["source"] == "mutt_counters" and forward["actual"] == 0.5
    assert report["slos"]["ingest_availability"]["source"] == "mutt_counters"
    assert report["fallback_reasons"] == {
        "ingest_availability": "Prometheus has no mutt_ingest_requests_total series",
        "forward_availability": "Prometheus has no mutt_moog_requests_total series",
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
        close_web_app(ingest)

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


def _a_number(value: float | None) -> bool:
    """True for an evaluated ratio: present and not 0/0."""
    return value is not None and not math.isnan(value)
