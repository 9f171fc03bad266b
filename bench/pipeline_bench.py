"""Load driver for a running MUTT stack: post events at a target rate, measure end to end.

    .venv/bin/python bench/pipeline_bench.py --url http://127.0.0.1:8080 \\
        --database-url postgresql://mutt@127.0.0.1/mutt --rate 10000 --batch 100 --duration 30

Sender threads post JSON-array bodies of ``--batch`` events on a fixed schedule (open loop: a slow
answer does not lower the offered rate, it shows up as latency and as falling behind). Every event of
a run carries a hostname ``bench-<run>-<n>``, so the run's rows in event_audit_log can be counted and
timed afterwards in the database itself:

- accepted/s: events the ingest endpoint accepted (2xx), per second of sending;
- audited/s: the run's audit rows over the span from the first event received to the last audited;
- ingest latency: per-request round trip at the sender (p50/p95/p99/max);
- end-to-end latency: ``audited_at - received_at`` of every audited row (PostgreSQL percentiles).

The driver waits until every accepted event is audited (or ``--drain-timeout`` passes) and exits
non-zero if any accepted event is missing: a benchmark that loses events has no figure.
"""

from __future__ import annotations

import argparse
import http.client
import random
import resource
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import orjson
from sqlalchemy import create_engine, text
from wrk_driver import run_wrk

SEVERITIES = (2, 3, 4, 5, 6)
MESSAGES = (
    "Interface GigabitEthernet0/{n} changed state to down",
    "BGP neighbor 10.0.{n}.1 Down: hold time expired",
    "%SYS-5-CONFIG_I: Configured from console by admin on vty{n}",
    "CPU utilization at {n}% for 5 minutes",
    "user admin login failed from 10.1.1.{n}",
    "Power supply {n} failed",
)
# Against the seed rules, only the interface-down line is forwarded to Moog (Page_and_ticket).
FORWARDED = MESSAGES[:1]
NOT_FORWARDED = MESSAGES[1:]


@dataclass
class SenderStats:
    """What the sender threads saw; one lock guards it."""

    accepted: int = 0
    rejected: int = 0
    failed_requests: int = 0
    latencies: list[float] = field(default_factory=list)
    behind: float = 0.0  # the most the senders fell behind their schedule, in seconds
    # Set by a driver that measures latency itself (wrk) instead of filling ``latencies``.
    percentiles: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_batch(
    run: str, start: int, size: int, rng: random.Random, forward_share: float | None = None
) -> list[dict]:
    """``size`` syslog-like events numbered from ``start``; hostnames carry the run id.

    With ``forward_share`` that fraction of the events is forwardable; without it every message is
    equally likely (one in six forwardable).
    """

    def message() -> str:
        if forward_share is None:
            return rng.choice(MESSAGES)
        return rng.choice(FORWARDED if rng.random() < forward_share else NOT_FORWARDED)

    now = datetime.now(UTC).isoformat()
    return [
        {
            "timestamp": now,
            "hostname": f"bench-{run}-{(start + i) % 500}",
            "message": message().format(n=(start + i) % 48),
            "syslog_severity": rng.choice(SEVERITIES),
            "program": "bench",
        }
        for i in range(size)
    ]


def sender(
    args: argparse.Namespace, run: str, index: int, started: float, stats: SenderStats
) -> None:
    """One thread: its share of the requests, each at its scheduled time.

    Plain ``http.client`` on a kept-alive connection: the sender shares the cores with the stack
    it measures, and ``requests`` cost about as much CPU per request as the ingest endpoint itself.
    """
    target = urlsplit(args.url)
    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["X-API-Key"] = args.api_key
    path = target.path.rstrip("/") + "/api/v2/ingest"
    connection = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
    rng = random.Random(index)
    requests_per_second = args.rate / args.batch
    total_requests = int(requests_per_second * args.duration)
    for n in range(index, total_requests, args.threads):
        due = started + n / requests_per_second
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        body = orjson.dumps(make_batch(run, n * args.batch, args.batch, rng, args.forward_share))
        sent = time.perf_counter()
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException):
            connection.close()  # reconnects on the next request
            with stats.lock:
                stats.failed_requests += 1
            continue
        elapsed = time.perf_counter() - sent
        with stats.lock:
            stats.latencies.append(elapsed)
            stats.behind = max(stats.behind, -delay)
            if response.status < 300:
                decoded = orjson.loads(answer)
                stats.accepted += decoded.get("accepted", 0)
                stats.rejected += len(decoded.get("rejected", []))
            else:
                stats.failed_requests += 1
    connection.close()


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of ``values`` (nearest rank), in milliseconds."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "max": ordered[-1] * 1000}


def audited(engine: object, run: str) -> dict[str, object]:
    """Count and time the run's audit rows in the database."""
    query = text(
        """
        SELECT count(*) AS n,
               min(received_at) AS first_received,
               max(audited_at) AS last_audited,
               percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
                   (ORDER BY extract(epoch FROM audited_at - received_at)) AS e2e,
               max(extract(epoch FROM audited_at - received_at)) AS e2e_max
        FROM event_audit_log
        WHERE hostname LIKE :pattern
        """
    )
    with engine.connect() as connection:  # type: ignore[attr-defined]
        row = connection.execute(query, {"pattern": f"bench-{run}-%"}).mappings().one()
    return dict(row)


def send_with_threads(
    args: argparse.Namespace, run: str, stats: SenderStats
) -> tuple[float, float]:
    """Post on the schedule from ``--threads`` threads; (seconds sending, the senders' CPU)."""
    started = time.perf_counter()
    threads = [
        threading.Thread(target=sender, args=(args, run, i, started, stats), daemon=True)
        for i in range(args.threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime


def send_with_wrk(args: argparse.Namespace, run: str, stats: SenderStats) -> tuple[float, float]:
    """Post single events from wrk, closed loop on ``--threads`` connections (wrk_driver.py).

    Each answered request below 400 counts one accepted event: bench/wrk/ingest.lua posts one
    valid event per request. Requests still in flight when wrk stops are not counted, though
    ingest may accept them: the run may audit a few more events than it counts as accepted.
    """
    if args.batch != 1:
        raise SystemExit("--driver wrk posts single events: use --batch 1")
    # As make_batch: no --forward-share is 1 in 6 forwardable; 0 is none (FORWARD_EVERY=0).
    share = args.forward_share
    every = 6 if share is None else round(1 / share) if share > 0 else 0
    env = {"RUN": run, "FORWARD_EVERY": str(every), "INGEST_API_KEY": args.api_key or ""}
    result = run_wrk("ingest.lua", args.url, args.threads, args.duration, env)
    stats.accepted = result.succeeded
    stats.failed_requests = result.failed_status + result.socket_errors
    stats.percentiles = result.latency_ms
    return result.seconds, result.cpu_seconds


def main(argv: list[str] | None = None) -> int:
    """Run one load test against a running stack and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="ingest base URL")
    parser.add_argument("--database-url", required=True, help="the stack's PostgreSQL URL")
    parser.add_argument("--rate", type=float, default=1000, help="offered events per second")
    parser.add_argument("--batch", type=int, default=1, help="events per request")
    parser.add_argument("--duration", type=float, default=30, help="seconds of sending")
    parser.add_argument("--threads", type=int, default=16, help="sender threads")
    parser.add_argument("--api-key", help="INGEST_API_KEY, when the stack sets one")
    parser.add_argument(
        "--forward-share",
        type=float,
        help="fraction of events the seed rules forward to Moog (default: 1 in 6)",
    )
    parser.add_argument("--drain-timeout", type=float, default=300)
    parser.add_argument(
        "--driver",
        choices=("threads", "wrk"),
        default="threads",
        help="threads: Python senders on --rate's schedule (open loop); wrk: single events from"
        " wrk on --threads connections, closed loop, --rate unused (wrk_driver.py says why)",
    )
    args = parser.parse_args(argv)

    run = uuid.uuid4().hex[:8]
    # The driver MUTT installs is psycopg2; a plain postgresql:// URL means it here too.
    engine = create_engine(args.database_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    stats = SenderStats()
    if args.driver == "wrk":
        offered = f"single events from wrk, closed loop, for {args.duration:g} s"
        senders = f"{args.threads} connections"
    else:
        offered = (
            f"{args.rate:g} events/s offered in requests of {args.batch} for {args.duration:g} s"
        )
        senders = f"{args.threads} sender threads"
    print(f"run {run}: {offered}, {senders}", flush=True)
    if args.driver == "wrk":
        send_seconds, sender_cpu = send_with_wrk(args, run, stats)
    else:
        send_seconds, sender_cpu = send_with_threads(args, run, stats)

    deadline = time.monotonic() + args.drain_timeout
    last_count, row = -1, audited(engine, run)
    while row["n"] < stats.accepted and time.monotonic() < deadline:
        if row["n"] != last_count:
            print(f"  audited {row['n']} of {stats.accepted}", flush=True)
            last_count = row["n"]
        time.sleep(1)
        row = audited(engine, run)

    span = (row["last_audited"] - row["first_received"]).total_seconds() if row["n"] else 0.0
    ingest = stats.percentiles or percentiles(stats.latencies)
    e2e = [v * 1000 for v in (row["e2e"] or [])] + [float(row["e2e_max"] or 0) * 1000]
    print(f"accepted      {stats.accepted} events ({stats.accepted / send_seconds:,.0f}/s)")
    print(f"rejected      {stats.rejected} events, {stats.failed_requests} failed requests")
    print(f"audited       {row['n']} events ({row['n'] / span if span else 0:,.0f}/s end to end)")
    print(f"behind        sender fell at most {stats.behind:.2f} s behind schedule")
    # The sender shares the machine with the stack: its CPU is CPU the stack did not get.
    print(
        f"sender cpu    {sender_cpu:.1f} s ({sender_cpu / send_seconds:.0%} of a core while sending)"
    )
    print("ingest ms     " + "  ".join(f"{k} {v:.1f}" for k, v in ingest.items()))
    if row["n"]:
        labels = ("p50", "p95", "p99", "max")
        print(
            "e2e ms        " + "  ".join(f"{k} {v:.0f}" for k, v in zip(labels, e2e, strict=True))
        )
    # More audited than counted is no loss: under wrk, requests in flight when it stopped.
    missing = stats.accepted - row["n"]
    if missing > 0:
        print(f"MISSING       {missing} accepted events never audited", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
