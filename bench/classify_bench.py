"""classify_batch in one process against a real PostgreSQL and Redis: events/s and client CPU per event.

    DATABASE_URL=postgresql://... REDIS_URL=redis://127.0.0.1:6379/15 \\
        .venv/bin/python bench/classify_bench.py --batches 100 --forward-share 0.01

No Celery worker, no HTTP: the task's own work (decide, publish forwards, one audit INSERT, counters)
on batches of 100 bench events. Run it with ``PYTHONPATH`` set to another checkout's tree to compare
two versions of the code side by side. The database must be migrated, seeded and partitioned.

``--task`` runs the whole task body instead: each batch recorded in the ledger beforehand (as ingest
does), then timed: the message body (JSON written by orjson, as ingest publishes it) decoded by
kombu's registry as the worker decodes it (MUTT's events content type; the worker's process modules
are imported), and the classify_event task called with its arguments (the ledger's attempt and
settle around classify_batch). Set PROMETHEUS_MULTIPROC_DIR to an empty directory to count the
metrics as the deployed workers do (mmap files).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

# bench/ is on sys.path as the script's own directory.
import orjson
from kombu.serialization import loads as decode_body
from pipeline_bench import make_batch

import mutt_app
from mutt_app.classify.batch import classify_batch
from mutt_app.config import load_settings
from mutt_app.events.schema import validate_items
from mutt_app.ledger import Batch
from mutt_app.names import CLASSIFY_TASK, EVENTS_CONTENT_TYPE
from mutt_app.runtime import Runtime, runtime_of


def main(argv: list[str] | None = None) -> int:
    """Classify ``--batches`` batches and print events/s (wall) and client CPU per event."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--forward-share", type=float, default=0.01)
    parser.add_argument(
        "--unmatched-share",
        type=float,
        default=0.0,
        help="fraction of events no seed rule matches (audited as unmatched)",
    )
    parser.add_argument(
        "--task",
        action="store_true",
        help="time the whole task body: decode the message, ledger attempt and settle",
    )
    args = parser.parse_args(argv)

    settings = load_settings()
    app = Runtime(settings).celery
    app.loader.import_default_modules()  # the task and process modules, as a worker imports them
    runtime = runtime_of(app)
    rng = random.Random(1)
    batches = []
    for n in range(args.batches + 1):
        items = make_batch(
            "classify", n * args.batch_size, args.batch_size, rng, args.forward_share
        )
        for i, item in enumerate(items):
            if rng.random() < args.unmatched_share:
                # No severity: the seed's catch-all rule (severity 7 and worse) passes it by.
                item["message"] = f"widget 10.9.{i % 256}.7 lost sync after {i}ms"
                item.pop("syslog_severity", None)
        events, _ = validate_items(
            items, required_fields=settings.required_message_fields, received_at=datetime.now(UTC)
        )
        batches.append([e.to_wire() for e in events])
    classify_batch(runtime, app, batches[0])  # compile the rules, open the connections
    if args.task:
        wall, cpu = run_tasks(app, runtime, batches[1:])
    else:
        wall, cpu = time.perf_counter(), time.process_time()
        for wire in batches[1:]:
            classify_batch(runtime, app, wire)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    events = args.batches * args.batch_size
    print(
        f"{Path(mutt_app.__file__).parent.parent}: {events / wall:,.0f} events/s, "
        f"{cpu / events * 1e6:.1f} us client CPU per event"
    )
    return 0


def run_tasks(app: object, runtime: Runtime, batches: list[list[dict]]) -> tuple[float, float]:
    """Record ``batches`` in the ledger, then decode and run each one's classify_event message;
    returns the wall and CPU seconds of the second part."""
    bodies = []
    for wire in batches:
        batch_id = uuid.uuid4().hex
        runtime.ledger.record([Batch(batch_id, wire)])
        bodies.append(orjson.dumps([[wire, batch_id, 0], {}, {"callbacks": None}]))
    task = app.tasks[CLASSIFY_TASK]  # type: ignore[attr-defined]
    wall, cpu = time.perf_counter(), time.process_time()
    for body in bodies:
        task_args, kwargs, _ = decode_body(
            body, EVENTS_CONTENT_TYPE, "utf-8", accept={EVENTS_CONTENT_TYPE}
        )
        task(*task_args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu


if __name__ == "__main__":
    sys.exit(main())
