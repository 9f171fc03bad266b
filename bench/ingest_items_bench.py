"""Ingest's own work per item, apart from HTTP and Redis: parse a 100-event body and validate its items.

    .venv/bin/python bench/ingest_items_bench.py [--bodies 300] [--repeat 5]
    PYTHONPATH=/tmp/before .venv/bin/python bench/ingest_items_bench.py   # another tree, to compare

Syslog-like events without a correlation_id (as relays send them), parsed by ``parse_body`` and
validated by ``validate_items`` as the endpoint does; prints the CPU per item, min and median of the
repeats, for the tree on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

import mutt_app
from mutt_app.events.body import parse_body
from mutt_app.events.schema import validate_items

BODY_EVENTS = 100


def body() -> bytes:
    """One request body: BODY_EVENTS syslog-like events from 20 hosts."""
    now = datetime.now(UTC).isoformat()
    return orjson.dumps(
        [
            {
                "timestamp": now,
                "hostname": f"router-{n % 20}",
                "message": f"%LINK-3-UPDOWN: Interface Gi0/{n} changed state to down",
                "syslog_severity": 3,
                "source": "rsyslog",
            }
            for n in range(BODY_EVENTS)
        ]
    )


def run(data: bytes, bodies: int) -> float:
    """CPU seconds per item to parse and validate ``bodies`` copies of ``data``."""
    started = time.process_time()
    for _ in range(bodies):
        items = parse_body(
            data, content_encoding=None, content_type="application/json", max_bytes=10 << 20
        )
        validate_items(items, required_fields=(), received_at=datetime.now(UTC))
    return (time.process_time() - started) / (bodies * BODY_EVENTS)


def main() -> int:
    """Print the min and median CPU per item."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bodies", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = body()
    run(data, 20)  # warm up
    costs = [run(data, args.bodies) * 1e6 for _ in range(args.repeat)]
    print(
        f"{Path(mutt_app.__file__).parent.parent}: min {min(costs):.1f} us,"
        f" median {statistics.median(costs):.1f} us per item"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
