"""What recording last-seen times costs classify: one ``ZADD ... GT`` per batch against a real Redis.

    REDIS_URL=redis://127.0.0.1:6379/15 .venv/bin/python bench/heartbeat_bench.py --hosts 5000

Batches of ``--batch-size`` events from ``--hosts`` distinct hosts (random, so most batches name
many hosts), each recorded with :func:`mutt_app.watch.last_seen.record_seen` as classify does. Prints the
wall time and client CPU per event and per batch, and Redis' own time per ZADD (INFO commandstats,
reset first): the figures to hold against classify's cost per event in BENCHMARKS.md. The sorted
set grows to ``--hosts`` members (about 100 bytes each); the key is deleted at the end.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime

import redis

from mutt_app.config import load_settings
from mutt_app.events.schema import validate_items
from mutt_app.rotation import redis_client
from mutt_app.watch.last_seen import LAST_SEEN_KEY, record_seen


def main(argv: list[str] | None = None) -> int:
    """Record ``--batches`` batches and print the cost per event."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--hosts", type=int, default=5000)
    args = parser.parse_args(argv)

    settings = load_settings()
    client: redis.Redis = redis_client(settings)
    rng = random.Random(1)
    batches = []
    for _ in range(args.batches):
        items = [
            {
                "hostname": f"host-{rng.randrange(args.hosts):05d}.example.net",
                "message": "x",
                "timestamp": datetime.now(UTC).isoformat(),
            }
            for _ in range(args.batch_size)
        ]
        events, _ = validate_items(items, required_fields=(), received_at=datetime.now(UTC))
        batches.append(events)
    client.delete(LAST_SEEN_KEY)
    record_seen(client, batches[0])  # connect, and warm the key
    client.config_resetstat()
    wall, cpu = time.perf_counter(), time.process_time()
    for events in batches:
        record_seen(client, events)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stats = client.info("commandstats").get("cmdstat_zadd", {})
    members = client.zcard(LAST_SEEN_KEY)
    memory = client.memory_usage(LAST_SEEN_KEY) or 0
    client.delete(LAST_SEEN_KEY)
    n = args.batches * args.batch_size
    print(
        f"{args.batches} batches x {args.batch_size} events, {args.hosts} hosts:"
        f" wall {wall / n * 1e6:.2f} us/event ({wall / args.batches * 1e6:.0f} us/batch),"
        f" client CPU {cpu / n * 1e6:.2f} us/event,"
        f" Redis {stats.get('usec_per_call', 0):.1f} us per ZADD"
        f" ({stats.get('usec_per_call', 0) / args.batch_size:.2f} us/event);"
        f" {members} members, {memory / max(members, 1):.0f} bytes each"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
