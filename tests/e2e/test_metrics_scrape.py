"""Every metric the Grafana dashboard and the alert rules read is served by a running stack, and a
real Prometheus scraping it (tests/prometheus.py) evaluates the dashboard's queries and the deploy
kit's rules without error."""

from __future__ import annotations

import contextlib
import json

import pytest
import requests

from tests.deploy_files import alert_rules, dashboard_exprs, metric_names
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import FORWARD_QUEUES, Stack
from tests.factories import posted_event, seed_pipeline
from tests.prometheus import Prometheus
from tests.services import wait_for

WEB_KEY = "scrape-web-key-0123456789"


def _served_names(url: str) -> set[str]:
    page = requests.get(url, timeout=5).text
    return {
        line.split("{", 1)[0].split(" ", 1)[0]
        for line in page.splitlines()
        if line and not line.startswith("#")
    }


def _used_names() -> set[str]:
    names: set[str] = set()
    for rule in alert_rules():
        names |= metric_names(rule["expr"])
    for expr in dashboard_exprs():
        names |= metric_names(expr)
    # Recording rules (``mutt:...``) and Prometheus's own ``up`` are not MUTT's to serve.
    return {n for n in names if n.startswith("mutt_")}


@pytest.mark.slow
def test_dashboard_and_alert_metrics_are_all_served_after_traffic(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(
        MOOG_RETRY_BASE_DELAY="0.2",
        MOOG_RETRY_MAX_DELAY="1",
        MOOG_MAX_RETRIES="1",
        REMEDIATION_INTERVAL_SECONDS="1",
        REMEDIATION_BACKOFF_BASE="1",
        REMEDIATION_MAX_RETRIES="1",
        MOOG_CIRCUIT_BREAKER_TIMEOUT="3",
        WEBUI_API_KEY=WEB_KEY,
        WEBUI_AUTH_IP_MAX_FAILURES="1",
        HEARTBEAT_CHECK_INTERVAL_SECONDS="1",  # a check runs, and reports its quiet hosts
    )
    seed_pipeline(stack.engine)
    # Started first (it takes seconds to pick its targets up), under the deploy kit's job names.
    jobs = {
        "mutt-ingest": [f"127.0.0.1:{stack.ingest_port}"],
        "mutt-web": [f"127.0.0.1:{stack.web_port}"],
        "mutt-worker": [f"127.0.0.1:{stack.metrics_port}"],
    }
    with Prometheus(jobs) as prometheus:
        _traffic_and_checks(stack, prometheus)


def _traffic_and_checks(stack: Stack, prometheus: Prometheus) -> None:
    with stack.together():
        stack.start_sink().start_ingest().start_web()
        stack.start_worker("classify", queues="mutt.classify,mutt.maintenance")
        stack.start_worker("forward", queues=FORWARD_QUEUES, concurrency=4, pool="threads")
        stack.start_beat()
    control = f"http://127.0.0.1:{stack.sink_port}/_control"

    def post(message: str, n: int) -> None:
        events = [posted_event(f"{message} {i}", hostname=f"r{i}") for i in range(n)]
        response = stack.post(json.dumps(events), **{"Content-Type": "application/json"})
        assert response.status_code == 200, response.text

    # Moog rejects (400): dead letters, remediation replays them, then poison.
    requests.post(control, json={"status": 400}, timeout=5).raise_for_status()
    post("CRITICAL rejected", 2)
    wait_for(lambda: stack.sink_stats()["rejected"].get("400", 0) >= 4, 60, "replays rejected")
    # Moog fails (500) for a moment: retries, then delivery.
    requests.post(control, json={"status": 500, "for_seconds": 1}, timeout=5).raise_for_status()
    post("CRITICAL retried", 2)
    wait_for(lambda: len(stack.sink_events()) >= 2, 60, "retried alerts delivered")
    post("CRITICAL retried", 2)  # the same two again: held back as duplicates
    post("nothing matches this", 3)  # unhandled
    stack.wait_audited(9)

    # The web app: the dashboard's figures (its database queries are timed), an API request, a bad
    # key, and then a throttled one.
    metrics = requests.get(
        f"{stack.web_url}/api/v2/metrics", headers={"X-API-Key": WEB_KEY}, timeout=30
    )
    assert metrics.status_code == 200 and metrics.json()["errors"] == [], metrics.text
    api = f"{stack.web_url}/api/v2/rules"
    assert requests.get(api, headers={"X-API-Key": WEB_KEY}, timeout=10).status_code == 200
    assert requests.get(api, headers={"X-API-Key": "wrong"}, timeout=10).status_code == 401
    assert requests.get(api, headers={"X-API-Key": WEB_KEY}, timeout=10).status_code == 429

    served = _served_names(f"http://127.0.0.1:{stack.ingest_port}/metrics")
    served |= _served_names(f"{stack.web_url}/metrics")
    served |= _served_names(f"http://127.0.0.1:{stack.metrics_port}/metrics")
    missing = sorted(_used_names() - served)
    assert not missing, f"used by the dashboard or alert rules but not served: {missing}"

    # What Prometheus makes of it: every target up, every used metric stored, ...
    prometheus.wait_scraped()
    assert {r["metric"]["job"] for r in prometheus.query('up{job=~"mutt-.*"} == 1')} == {
        "mutt-ingest",
        "mutt-web",
        "mutt-worker",
    }

    def stored_missing() -> list[str]:
        return sorted(_used_names() - set(prometheus.api("label/__name__/values")))

    with contextlib.suppress(TimeoutError):
        wait_for(lambda: not stored_missing(), 10, "every used metric in Prometheus")
    assert not stored_missing(), "served but not stored by Prometheus"
    # ... every dashboard query evaluates (Grafana's interval variables filled in) ...
    for expr in dashboard_exprs():
        filled = expr.replace("$__rate_interval", "1m").replace("$__range", "5m")
        prometheus.query(filled)  # raises on a query Prometheus refuses
    # ... and every rule of deploy/prometheus/alerts.yml evaluates without error.
    wait_for(lambda: "unknown" not in _rule_health(prometheus), 15, "every rule evaluated")
    broken = {name: health for name, health in _rule_health(prometheus).items() if health != "ok"}
    assert not broken, broken

    # The poison store is not empty: its alert is on its way (pending for its 30 minutes).
    def poison_alert() -> bool:
        return any(
            a["labels"]["alertname"] == "MuttPoisonItems" and a["state"] in {"pending", "firing"}
            for a in prometheus.api("alerts")["alerts"]
        )

    wait_for(poison_alert, 20, "MuttPoisonItems pending", interval=0.2)


def _rule_health(prometheus: Prometheus) -> dict[str, str]:
    """Each rule's name and health ("ok", "err" with its error, or "unknown" before its first
    evaluation)."""
    return {
        rule["name"]: rule["health"] + (f": {rule['lastError']}" if rule.get("lastError") else "")
        for group in prometheus.api("rules")["groups"]
        for rule in group["rules"]
    }
