"""A real Prometheus for the tests: Debian's ``prometheus`` (.ci/bootstrap) scraping a live stack.

:class:`Prometheus` writes a configuration that scrapes the given ``/metrics`` endpoints every second
under the deploy kit's job names (``mutt-ingest``, ``mutt-web``, ``mutt-worker``:
deploy/prometheus/prometheus.yml), loads the deploy kit's rules (deploy/prometheus/alerts.yml) and
logs every query it answers (``query_log_file``), then runs ``prometheus`` on loopback and a free
port with its TSDB in a temporary directory. Tests point PROMETHEUS_URL at :attr:`Prometheus.url`
and read what MUTT asked with :meth:`Prometheus.queries`.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import requests

from tests.deploy_files import DEPLOY
from tests.services import ServerProcess, wait_for

RULES = DEPLOY / "prometheus" / "alerts.yml"


class PrometheusError(AssertionError):
    """Prometheus answered a test's query with an error."""


class Prometheus(ServerProcess):
    """``with Prometheus({"mutt-ingest": ["127.0.0.1:8080"]}) as prometheus:`` (job -> targets).

    ``options`` are extra command-line flags (``--query.max-samples=1``).
    """

    name = "prometheus"

    def __init__(
        self,
        jobs: dict[str, list[str]],
        *,
        rules: bool = True,
        options: tuple[str, ...] = (),
    ) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed (apt-get install prometheus)")
        self.binary = binary
        self.jobs = jobs
        self.rules = rules
        self.options = list(options)
        super().__init__()
        self.query_log = self.dir / "queries.log"

    def _config(self) -> dict[str, Any]:
        return {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
                "query_log_file": str(self.query_log),
            },
            "rule_files": [str(RULES)] if self.rules else [],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}]}
                for job, targets in self.jobs.items()
            ],
        }

    def start(self) -> Prometheus:
        config = self.dir / "prometheus.yml"
        config.write_text(json.dumps(self._config()))  # JSON is YAML
        self.launch(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *self.options,
            ]
        )
        wait_for(self._ready, 30, f"prometheus on port {self.port}")
        return self

    def _ready(self) -> bool:
        self.check_running()
        return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200

    # --- asking it ----------------------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of a successful answer of ``/api/v1/<path>``; PrometheusError else."""
        response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {response.status_code} {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query: ``[{"metric": {...}, "value": [t, "v"]}, ...]``."""
        return self.api("query", query=expr)["result"]

    def value(self, expr: str) -> float | None:
        """The single value of an instant query, None when its result is empty."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_scraped(self, timeout: float = 30) -> None:
        """Wait until every target has been scraped successfully at least twice (Prometheus may be
        started before its targets: it only takes up to 5 s to pick its targets up)."""

        def all_up() -> bool:
            targets = self.api("targets")["activeTargets"]
            expected = sum(len(t) for t in self.jobs.values())
            return len(targets) == expected and all(t["health"] == "up" for t in targets)

        wait_for(all_up, timeout, "every target scraped", interval=0.2)
        # Two successful scrapes of each: increase() and rate() need two samples per series.
        wait_for(
            lambda: (self.value("min(sum_over_time(up[1m]))") or 0) >= 2,
            timeout,
            "two scrapes of every target",
            interval=0.2,
        )

    def queries(self) -> list[str]:
        """Every query Prometheus answered so far, oldest first (its query log)."""
        if not self.query_log.exists():
            return []
        return [
            json.loads(line)["params"]["query"]
            for line in self.query_log.read_text().splitlines()
            if line.strip()
        ]
