"""Ingest's CPU per request inside one process: the ingest app called as WSGI by many threads.

    REDIS_URL=redis://127.0.0.1:18379/0 INGEST_API_KEY=k \\
        .venv/bin/python bench/ingest_request_bench.py --events 1 --threads 64 [--seconds 5]
    PYTHONPATH=/tmp/before ... bench/ingest_request_bench.py ...   # another tree, to compare

``--events 1`` is a stream of single-event requests from many senders; ``--events 100`` is relays'
batches. Each thread posts the same body over and over (syslog-like events without a
correlation_id) straight into ``create_ingest_app()``'s WSGI callable, with the publisher's thread,
the ledger and the classify tasks on the Redis of REDIS_URL (point it at a Redis of your own: the
bench empties the classify queue and the ledger between repeats). HTTP and gunicorn are left out.
Prints the process's CPU per request and per event, min and median of the repeats.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import redis

import mutt_app
from mutt_app import metrics
from mutt_app.names import CLASSIFY_QUEUE
from mutt_app.web import create_ingest_app


def body(events: int) -> bytes:
    """One request body: ``events`` syslog-like events from 20 hosts (one object for one event)."""
    now = datetime.now(UTC).isoformat()
    items = [
        {
            "timestamp": now,
            "hostname": f"router-{n % 20}",
            "message": f"%LINK-3-UPDOWN: Interface Gi0/{n} changed state to down",
            "syslog_severity": 3,
            "source": "rsyslog",
        }
        for n in range(events)
    ]
    return orjson.dumps(items if events > 1 else items[0])


def environ(data: bytes, api_key: str | None) -> dict:
    """A WSGI environ for POST /api/v2/ingest of ``data``, as gunicorn would make it."""
    env = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/v2/ingest",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1:8080",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.input": io.BytesIO(data),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    if api_key:
        env["HTTP_X_API_KEY"] = api_key
    return env


def run(app, data: bytes, threads: int, seconds: float) -> float:
    """CPU seconds per request of ``threads`` threads posting ``data`` for ``seconds``."""
    api_key = os.environ.get("INGEST_API_KEY")
    counts = [0] * threads
    statuses: set[str] = set()
    stop = time.monotonic() + seconds

    def post(slot: int) -> None:
        def start_response(status: str, headers: list, exc_info: object = None) -> None:
            if not status.startswith("200"):
                statuses.add(status)

        while time.monotonic() < stop:
            for _ in app(environ(data, api_key), start_response):
                pass
            counts[slot] += 1

    workers = [threading.Thread(target=post, args=(i,)) for i in range(threads)]
    started = time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    used = time.process_time() - started
    if statuses:
        raise SystemExit(f"answers other than 200: {sorted(statuses)}")
    return used / sum(counts)


def main() -> int:
    """Print the min and median CPU per request and per event."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1, help="events per request")
    parser.add_argument("--threads", type=int, default=64, help="concurrent senders")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("INGEST_ALLOW_OPEN", "true")
    # Every thread may ask the throttle at once when its "clear" expires: a connection each.
    os.environ.setdefault("REDIS_MAX_CONNECTIONS", str(args.threads + 16))
    app = create_ingest_app()
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    data = body(args.events)

    def reset() -> None:
        client.delete(CLASSIFY_QUEUE, "mutt:ledger:batches", "mutt:ledger:index")

    reset()
    run(app, data, args.threads, 1.0)  # warm up
    costs = []
    for _ in range(args.repeat):
        reset()
        costs.append(run(app, data, args.threads, args.seconds) * 1e6)
    reset()
    rounds = {s.name: s.value for s in metrics.INGEST_PUBLISH_ROUND.collect()[0].samples}
    per_round = rounds["mutt_ingest_publish_round_requests_sum"] / max(
        1, rounds["mutt_ingest_publish_round_requests_count"]
    )
    low, median = min(costs), statistics.median(costs)
    print(
        f"{Path(mutt_app.__file__).parent.parent}: {args.events} events x {args.threads} threads:"
        f" min {low:.0f} us, median {median:.0f} us per request"
        f" ({low / args.events:.1f} / {median / args.events:.1f} us per event;"
        f" {per_round:.1f} requests per publishing round)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
