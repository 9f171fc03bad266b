"""Drive an HTTP endpoint with wrk (Debian's ``wrk`` package), closed loop, and read its figures.

The Python senders of pipeline_bench.py and alerta_bench.py share the two cores with the server
they measure, and cost a single-event request about a third of what MUTT's ingest spends on it:
MUTT's figure then measures the sender as much as MUTT. wrk is written in C and costs a few percent
of that, so the cores go to the servers. Each script in ``bench/wrk/`` writes the requests and, when
wrk is done, prints one JSON line of figures, which :func:`run_wrk` returns.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent / "wrk"


@dataclass(frozen=True)
class WrkResult:
    """What wrk saw: requests answered, of which 4xx or 5xx, socket errors, latency, its own CPU."""

    requests: int
    failed_status: int
    socket_errors: int
    seconds: float
    latency_ms: dict[str, float]
    cpu_seconds: float

    @property
    def succeeded(self) -> int:
        """Requests answered below 400 (wrk counts 4xx and 5xx as errors)."""
        return self.requests - self.failed_status


def run_wrk(
    script: str, url: str, connections: int, seconds: float, env: dict[str, str] | None = None
) -> WrkResult:
    """Run ``bench/wrk/<script>`` against ``url`` with ``connections`` for ``seconds``."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian's package)")
    before = os.times()
    completed = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s",
         "-s", str(SCRIPTS / script), url],
        env={**os.environ, "WRK_SCRIPTS": str(SCRIPTS), **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    after = os.times()
    line = next(ln for ln in completed.stdout.splitlines() if ln.startswith("{"))
    figures = json.loads(line)
    return WrkResult(
        requests=figures["requests"],
        failed_status=figures["status"],
        socket_errors=figures["connect"] + figures["read"] + figures["write"] + figures["timeout"],
        seconds=figures["duration_us"] / 1e6,
        latency_ms={k: figures[k] / 1000 for k in ("p50", "p95", "p99", "max")},
        cpu_seconds=(after.children_user - before.children_user)
        + (after.children_system - before.children_system),
    )
