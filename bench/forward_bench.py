"""Forward worker CPU per alert: N alerts through publish_forwards onto a forward-only stack.

    DATABASE_URL=postgresql://... .venv/bin/python bench/forward_bench.py --alerts 5000
    DATABASE_URL=postgresql://... PYTHONPATH=/work/main .venv/bin/python bench/forward_bench.py

Starts a private Redis, the Moog sink (``mutt moog-sink``) and one forward worker (``celery worker
-Q mutt.forward.page,mutt.forward -P threads``, as ``mutt run`` starts it), publishes ``--alerts``
Ticket_only alerts with publish_forwards (outbox, then the forward tasks, as classify does), waits
until the sink holds them all, and prints the worker process's CPU seconds (user + system, from
/proc) per alert, the wall time and the sink's request count. A warm-up round first keeps imports and
connection set-up out of the figure. The worker and the publisher run the code found on
``PYTHONPATH`` (default: this checkout), so running it twice, once with another tree, compares them
side by side. The database is only touched by dead letters (none in a normal run); it must exist.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def _alerts(n: int) -> list[dict[str, Any]]:
    now = int(datetime.now(UTC).timestamp())
    alerts = []
    for i in range(n):
        external_id = str(uuid.uuid4())
        alerts.append(
            {
                "signature": f"bench-{i % 50}::1::link down",
                "source_id": f"bench-{i % 50}",
                "external_id": external_id,
                "manager": "MUTT",
                "source": f"bench-{i % 50}",
                "class": "NETO",
                "agent": "MUTT",
                "agent_location": f"bench-{i % 50}",
                "type": "syslog",
                "severity": 4,
                "description": f"Interface Gi0/{i % 48} changed state to down ({i})",
                "agent_time": now,
                "custom_info": {"handling": "Ticket_only", "correlation_id": external_id},
            }
        )
    return alerts


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark once and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    if not os.environ.get("DATABASE_URL"):
        parser.error("set DATABASE_URL (an existing, migrated database)")

    tmp = Path(tempfile.mkdtemp(prefix="forward-bench-"))
    redis_port, sink_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "MOOG_WEBHOOK_URL": f"http://127.0.0.1:{sink_port}/webhook",
        # The limiter and the sink, not the benchmark, would set the pace otherwise.
        "MOOG_RATE_LIMIT": os.environ.get("MOOG_RATE_LIMIT", "100000"),
        "MUTT_DATA_DIR": str(tmp / "data"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], name: str) -> subprocess.Popen[bytes]:
        log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    try:
        start(["redis-server", "--port", str(redis_port), "--save", "", "--dir", str(tmp)], "redis")
        start([sys.executable, "-m", "mutt_app.devtools", "moog-sink", "--port", str(sink_port),
               "--quiet"], "sink")  # fmt: skip
        sink = f"http://127.0.0.1:{sink_port}"
        _wait(lambda: _answers(f"{sink}/health"), 60, "the sink")
        worker = start(
            [sys.executable, "-m", "celery", "-A", "mutt_app", "worker",
             "-Q", "mutt.forward.page,mutt.forward", "-P", "threads",
             "-c", str(args.concurrency), "-n", f"bench-{os.getpid()}@%h",
             "--without-gossip", "--without-mingle", "-l", "WARNING"],
            "worker",
        )  # fmt: skip

        # Imported here, after PYTHONPATH decided which tree this is.
        import mutt_app
        from mutt_app.config import load_settings
        from mutt_app.holdback.pipeline import publish_forwards
        from mutt_app.runtime import Runtime, runtime_of

        app = Runtime(load_settings(env)).celery
        runtime = runtime_of(app)

        def received() -> int:
            return int(requests.get(f"{sink}/_stats", timeout=5).json()["received"])

        publish_forwards(runtime, app, _alerts(args.warmup))
        _wait(lambda: received() >= args.warmup, 120, "the warm-up alerts")
        time.sleep(1)
        requests.post(f"{sink}/_control", json={"reset": True}, timeout=5)

        alerts = _alerts(args.alerts)
        cpu, wall = _cpu_seconds(worker.pid), time.perf_counter()
        publish_forwards(runtime, app, alerts)
        _wait(lambda: received() >= args.alerts, args.timeout, f"{args.alerts} alerts")
        cpu, wall = _cpu_seconds(worker.pid) - cpu, time.perf_counter() - wall
        stats = requests.get(f"{sink}/_stats", timeout=5).json()
        print(
            f"{Path(mutt_app.__file__).parent.parent}: {args.alerts} alerts in {wall:.1f} s "
            f"({args.alerts / wall:,.0f}/s), {stats['requests']} requests to the sink, "
            f"forward worker CPU {cpu / args.alerts * 1e3:.3f} ms per alert"
        )
        return 0
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


if __name__ == "__main__":
    sys.exit(main())
