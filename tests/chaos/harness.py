"""The chaos harness: a loaded MUTT stack, a failure caused mid-run, and the checks of issue 14.

A chaos test starts the whole pipeline on real processes (:func:`start_pipeline`: the Moog sink,
gunicorn ingest, classify and forward workers, one of each unless asked for more, and beat), runs a
:class:`ChaosRun` over it (:class:`Load` senders, a recovery :class:`Probe`, a :class:`Supervisor`
restarting what exits), causes its failure, and ends with :meth:`ChaosRun.finish`, which checks:

* every event answered 2xx is audited exactly once (``lost`` and ``audited_twice`` are 0);
* every accepted forwardable event reached the sink, with at most 0.1 % duplicates among them;
* senders saw only 2xx or 503; connection errors (while a process is dead) are counted apart,
  and any other status fails the run;
* each failure was followed by the pipeline flowing again, in ``recovery`` seconds; ``accepting``
  says how soon after it ingest answered 2xx again (to a request sent after the failure).

The sentinel and PostgreSQL failover tests use the same pieces; keep changes backwards compatible.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import requests
from sqlalchemy import Engine, func, insert, select

from mutt_app.db.models import AlertRule, EventAuditLog
from tests.e2e.stack import FORWARD_QUEUES, Process, Stack
from tests.services import wait_for

# Settings of every chaos stack, chosen so that recovery is fast but works as in production.
CHAOS_ENV: dict[str, str] = {
    # A killed worker's unacked messages are handed out again once their lease lapses: the shipped
    # BROKER_VISIBILITY_TIMEOUT (10 s) and BROKER_RESTORE_INTERVAL (2 s), as production runs them.
    # Short retries and breaker so a Moog fault plays out within the run.
    "MOOG_RETRY_BASE_DELAY": "0.2",
    "MOOG_RETRY_MAX_DELAY": "5",
    "MOOG_CIRCUIT_BREAKER_TIMEOUT": "5",
    "MOOG_WEBHOOK_TIMEOUT": "2",
    # What the broker lost outright (a kill between BRPOP and the unacked record, kombu #305;
    # an ingest killed between the ledger and the publish) beat's reconcile_ledger republishes
    # after this long (production: 600 s). Longer than a lapsed lease: sooner would republish what
    # the broker is about to redeliver anyway. Reconcile runs every max(20 // 4, 5) = 5 s.
    "LEDGER_RECONCILE_AFTER": "20",
    # A SIGKILLed forward worker posts again at most one batch per thread (Moog's answer and the
    # sent-key write cannot be one step): threads x MOOG_BATCH_SIZE alerts. With start_pipeline's
    # one forward thread and batches of 4, a kill costs at most 4 of the ~4,000 forwarded alerts.
    "MOOG_BATCH_SIZE": "4",
    # The local sink is not the subject; the cluster rate limit must not pace the run.
    "MOOG_RATE_LIMIT": "2000",
    # Storm handling (dedup, budgets, flapping) is tested elsewhere; here each forwardable event
    # must become exactly one alert, so the sink can be checked alert by alert.
    "DEDUP_WINDOW_SECONDS": "0",
    "STORM_BUDGET_PER_DEVICE": "0",
    "STORM_BUDGET_PER_RULE": "0",
    "FLAP_TRANSITIONS": "0",
    "REMEDIATION_INTERVAL_SECONDS": "2",
}

# The seeded rules: one event in five is forwardable (half pages, half tickets); the others match
# a Log_only rule, so none is unhandled (an unhandled storm would add meta-alerts to the sink).
RULES = [
    dict(match_string="CRITICAL", match_type="contains", priority=900,
         prod_handling="Page_and_ticket", dev_handling="Ticket_only", team_assignment="NETO"),
    dict(match_string="disk.*full", match_type="regex", priority=700,
         prod_handling="Ticket_only", dev_handling="Log_only", team_assignment="UNIX"),
    dict(match_string="link flap", match_type="contains", priority=100,
         prod_handling="Log_only", dev_handling="Log_only", team_assignment="NETO"),
]  # fmt: skip
FORWARD_EVERY = 5
# Duplicates allowed among forwarded alerts.
DUPLICATE_SHARE_LIMIT = 0.001
# The chaos process names of start_pipeline, as a test names them to ChaosRun.kill.
PARTS = ("sink", "ingest", "classify", "forward", "beat")


def seed_rules(engine: Engine) -> None:
    """Insert :data:`RULES`."""
    with engine.begin() as conn:
        conn.execute(insert(AlertRule), RULES)


def chaos_event(sender: str, seq: int) -> tuple[dict[str, Any], bool]:
    """Event ``seq`` of ``sender`` with a fresh correlation_id, and whether it is forwardable."""
    host = f"chaos-{sender}-{seq % 40}"
    kind = seq % (2 * FORWARD_EVERY)
    if kind == 0:
        message = f"CRITICAL power supply {seq} failed"  # a page
    elif kind == FORWARD_EVERY:
        message = f"disk /var/{seq} full"  # a ticket
    else:
        message = f"link flap on port {seq}"  # Log_only
    event = {
        "timestamp": datetime.now(UTC).isoformat(),
        "hostname": host,
        "message": message,
        "correlation_id": str(uuid.uuid4()),
    }
    return event, kind in (0, FORWARD_EVERY)


def start_pipeline(
    stack: Stack,
    *,
    forward_threads: int = 1,
    classify_concurrency: int = 2,
    classify_workers: int = 1,
    forward_workers: int = 1,
) -> Stack:
    """Seed :data:`RULES` and start every part, as the deploy kit runs them (one unit each).

    The classify worker consumes mutt.classify and mutt.maintenance (mutt-worker-classify.service),
    the forward worker both forward lanes in threads (mutt-worker-forward.service), beat RedBeat.
    More than one worker of a kind (as on more than one host) are named ``classify``,
    ``classify-2``, ... and ``forward``, ``forward-2``, ...
    """
    seed_rules(stack.engine)
    classify, forward = (worker_names(kind, count) for kind, count in
                         (("classify", classify_workers), ("forward", forward_workers)))  # fmt: skip
    # The first of each kind starts with the other parts, at once; the others of a kind after it
    # (two at once would race for their kind's probe port, which the first must hold).
    for rank in range(max(classify_workers, forward_workers, 1)):
        with stack.together():
            if rank == 0:
                stack.start_sink().start_ingest()
            if rank < classify_workers:
                stack.start_worker(classify[rank], queues="mutt.classify,mutt.maintenance",
                                   concurrency=classify_concurrency)  # fmt: skip
            if rank < forward_workers:
                stack.start_worker(forward[rank], queues=FORWARD_QUEUES,
                                   concurrency=forward_threads, pool="threads")  # fmt: skip
            if rank == 0:
                stack.start_beat()
    return stack


def worker_names(kind: str, count: int) -> list[str]:
    """The stack names of ``count`` workers of ``kind`` (start_pipeline's naming)."""
    return [kind if n == 1 else f"{kind}-{n}" for n in range(1, count + 1)]


# --- supervision -------------------------------------------------------------------------------


class Supervisor:
    """Restarts any stack process that exited, as systemd's Restart=always with RestartSec does.

    A test SIGKILLs a process and the supervisor brings it back; a process that chooses to exit
    (e.g. after losing its Redis master) comes back the same way. ``pause(name)`` holds a process
    down on purpose.
    """

    def __init__(self, stack: Stack, restart_sec: float = 1.0) -> None:
        self.stack = stack
        self.restart_sec = restart_sec
        self.restarts: Counter[str] = Counter()
        self.events: list[tuple[str, float, float]] = []  # (name, noticed dead, restarted) wall
        self.failed_starts: list[str] = []
        self._paused: set[str] = set()
        self._dead_since: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    @contextlib.contextmanager
    def pause(self, name: str) -> Iterator[None]:
        """Leave ``name`` down (if it exits) while the block runs."""
        self._paused.add(name)
        try:
            yield
        finally:
            self._paused.discard(name)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for name, process in list(self.stack.processes.items()):
                if name in self._paused or process.popen is None or process.alive:
                    self._dead_since.pop(name, None)
                    continue
                now = time.time()
                died = self._dead_since.setdefault(name, now)
                if now - died >= self.restart_sec and not self._stop.is_set():
                    try:
                        process.start()
                    except OSError as exc:  # as systemd would: log it and try again later
                        self.failed_starts.append(f"{name}: {exc!r}")
                        self._dead_since[name] = now
                        continue
                    self._dead_since.pop(name, None)
                    self.restarts[name] += 1
                    self.events.append((name, died, time.time()))


# --- load --------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What senders saw, shared by all sender threads (and the probe).

    ``statuses`` counts HTTP statuses, and two of the run's own failures: -1 a request only partly
    accepted, -2 a sender thread that crashed.
    """

    statuses: Counter[int] = field(default_factory=Counter)
    connection_errors: int = 0
    failures: list[str] = field(default_factory=list)  # the first few unexpected answers
    # (sent, answered) epoch seconds of every request answered 2xx, senders' and probes'.
    accepts: list[tuple[float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, status: int, text: str, sent: float | None = None) -> None:
        """Count an answer; a 2xx to a request sent at ``sent`` is kept in :attr:`accepts`."""
        with self.lock:
            self.statuses[status] += 1
            if sent is not None and status in (200, 202):
                self.accepts.append((sent, time.time()))
            if status not in (200, 202, 503) and len(self.failures) < 10:
                self.failures.append(f"{status}: {text[:300]}")

    def accepting(self, failure: Failure) -> float | None:
        """Seconds from ``failure`` to the first 2xx answer to a request sent after it."""
        with self.lock:
            answered = [at for sent, at in self.accepts if sent >= failure.at]
        return round(min(answered) - failure.at, 2) if answered else None

    def connection_error(self) -> None:
        """A connection refused, cut or timed out (the answer is unknown: the sender re-posts)."""
        with self.lock:
            self.connection_errors += 1

    def crashed(self, who: str, exc: BaseException) -> None:
        """A sender thread died: a failure of the run (its events would silently go unsent)."""
        with self.lock:
            self.statuses[-2] += 1
            self.failures.append(f"{who} crashed: {exc!r}")


class Load:
    """Sender threads posting ``events`` unique events in requests of ``per_request``, at ``rate``
    events a second in all. A sender keeps a request's events until they are answered 2xx: on
    503 it waits Retry-After (capped at ``max_wait``), on a connection error a moment, and posts
    the same bytes again (the idempotent audit makes a re-post of an accepted event harmless)."""

    def __init__(
        self,
        url: str,
        senders: int = 4,
        events: int = 20_000,
        per_request: int = 100,
        rate: float = 600.0,
        max_wait: float = 1.0,
    ) -> None:
        self.url, self.per_request, self.max_wait = url, per_request, max_wait
        self.total = events
        self.tally = Tally()
        self.accepted: dict[str, bool] = {}  # correlation_id -> forwardable
        self._lock = threading.Lock()
        self._stop = threading.Event()
        share = events // senders
        self._threads = [
            threading.Thread(
                target=self._send,
                args=(f"s{i}", share + (events % senders if i == 0 else 0), rate / senders),
                name=f"sender-{i}",
                daemon=True,
            )
            for i in range(senders)
        ]
        self.started_at = self.ended_at = 0.0

    def start(self) -> Load:
        self.started_at = time.time()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.join(10)

    def join(self, timeout: float) -> bool:
        """Wait for every sender; True when all have finished."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))
        done = not any(t.is_alive() for t in self._threads)
        if done and not self.ended_at:
            self.ended_at = time.time()
        return done

    @property
    def accepted_count(self) -> int:
        return len(self.accepted)

    def _send(self, sender: str, count: int, rate: float) -> None:
        try:
            self._send_all(sender, count, rate)
        except Exception as exc:  # reported in the figures, not lost with the thread
            self.tally.crashed(f"sender {sender}", exc)

    def _send_all(self, sender: str, count: int, rate: float) -> None:
        session = requests.Session()
        next_at = time.monotonic()
        for start in range(0, count, self.per_request):
            if self._stop.is_set():
                return
            pairs = [
                chaos_event(sender, seq)
                for seq in range(start, min(start + self.per_request, count))
            ]
            body = orjson.dumps([event for event, _ in pairs])
            if self._post_until_accepted(session, body, len(pairs)):
                with self._lock:
                    self.accepted.update((e["correlation_id"], fwd) for e, fwd in pairs)
            next_at += len(pairs) / rate
            self._stop.wait(max(next_at - time.monotonic(), 0))
        session.close()

    def _post_until_accepted(self, session: requests.Session, body: bytes, count: int) -> bool:
        while not self._stop.is_set():
            sent = time.time()
            try:
                response = session.post(
                    self.url, data=body, headers={"Content-Type": "application/json"}, timeout=30
                )
            except requests.RequestException:  # refused, cut off or timed out
                self.tally.connection_error()
                session.close()  # the pooled connection is dead; open a new one
                self._stop.wait(0.2)
                continue
            self.tally.answer(response.status_code, response.text, sent)
            if response.status_code in (200, 202):
                answer = response.json()
                if answer.get("accepted") != count or answer.get("rejected"):
                    self.tally.answer(-1, f"partly accepted: {response.text[:300]}")
                return True
            if response.status_code == 503:
                wait = float(response.headers.get("Retry-After", "1"))
                self._stop.wait(min(wait, self.max_wait))
                continue
            # Anything else is a failure of the run (counted); the events are sent again, so a
            # 500 shows as a failure, not also as a loss.
            self._stop.wait(0.2)
        return False


# --- recovery ----------------------------------------------------------------------------------


class SinkLog:
    """The sink's received alerts, read incrementally (``/events?since=``)."""

    def __init__(self, sink_url: str) -> None:
        self.url = sink_url
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def refresh(self) -> list[dict[str, Any]]:
        with self._lock:
            answer = requests.get(self.url, params={"since": len(self.events)}, timeout=10).json()
            self.events.extend(answer["events"])
            return self.events

    def arrivals(self) -> dict[str, float]:
        """external_id -> first arrival (epoch seconds)."""
        first: dict[str, float] = {}
        for event in self.refresh():
            first.setdefault(str(event.get("external_id")), float(event["_received_at"]))
        return first


@dataclass(frozen=True)
class Failure:
    """A failure a test caused, and when (epoch seconds)."""

    name: str
    at: float


class Probe:
    """Posts one forwardable (page) event every ``interval`` seconds, once each.

    An accepted probe is complete once it is both audited and at the sink. The recovery after a
    failure at T is the earliest completion among probes first posted at or after T, minus T:
    the time until an event entering after the failure came out at both ends.
    """

    def __init__(self, stack: Stack, sink: SinkLog, tally: Tally, interval: float = 0.2) -> None:
        self.stack, self.sink, self.tally, self.interval = stack, sink, tally, interval
        self.posted: list[tuple[str, float]] = []  # accepted (correlation_id, posted at)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    def start(self) -> Probe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        session = requests.Session()
        n = 0
        while not self._stop.wait(self.interval):
            n += 1
            cid = str(uuid.uuid4())
            event = {
                "timestamp": datetime.now(UTC).isoformat(),
                "hostname": "chaos-probe",
                "message": f"CRITICAL chaos probe {n}",
                "correlation_id": cid,
            }
            posted = time.time()
            try:
                response = session.post(self.stack.ingest_url, data=orjson.dumps(event),
                                        headers={"Content-Type": "application/json"}, timeout=5)  # fmt: skip
            except requests.RequestException:  # refused, cut off or timed out
                self.tally.connection_error()
                session.close()
                continue
            self.tally.answer(response.status_code, response.text, posted)
            if response.status_code in (200, 202):
                self.posted.append((cid, posted))
        session.close()

    def completions(self, since: float = 0.0) -> list[tuple[float, float]]:
        """(posted, complete) epoch seconds of each accepted probe posted at or after ``since``
        that is complete (audited and at the sink); empty while the database or sink is down."""
        after = [(cid, at) for cid, at in list(self.posted) if at >= since]
        if not after:
            return []
        try:
            arrived = self.sink.arrivals()
            with self.stack.engine.connect() as conn:
                audited = dict(
                    conn.execute(
                        select(EventAuditLog.correlation_id, EventAuditLog.audited_at).where(
                            EventAuditLog.correlation_id.in_([uuid.UUID(c) for c, _ in after])
                        )
                    ).all()
                )
        except Exception:  # the database or the sink may be the part that failed, right now
            return []
        return [
            (at, max(arrived[cid], audited[uuid.UUID(cid)].timestamp()))
            for cid, at in after
            if cid in arrived and uuid.UUID(cid) in audited
        ]

    def recovery(self, failure: Failure) -> float | None:
        """Seconds from ``failure`` to the first completed probe posted after it (None: none yet)."""
        done = [complete for _, complete in self.completions(failure.at)]
        return round(min(done) - failure.at, 2) if done else None

    def steady(self, max_latency: float = 1.0, within: float = 2.0) -> bool:
        """Whether a probe posted in the last ``within`` seconds completed in ``max_latency``:
        the pipeline has no backlog left from an earlier failure."""
        recent = self.completions(time.time() - within)
        return any(complete - posted <= max_latency for posted, complete in recent)

    def latencies(self) -> list[float]:
        """Seconds from post to completion of every completed probe, sorted."""
        return sorted(complete - posted for posted, complete in self.completions())

    def wait_recovered(self, failure: Failure, timeout: float = 60) -> float:
        """Block until the pipeline flows again after ``failure``; its recovery seconds."""
        found: list[float] = []

        def recovered() -> bool:
            seconds = self.recovery(failure)
            if seconds is not None:
                found.append(seconds)
            return bool(found)

        wait_for(recovered, timeout, f"the pipeline to flow again after {failure.name}", 0.5)
        return found[-1]


# --- figures -----------------------------------------------------------------------------------


@dataclass
class ChaosFigures:
    """What a chaos run measured (all counts are events or alerts)."""

    name: str
    events: int  # answered 2xx (senders and probes)
    lost: int  # answered 2xx, never audited
    audited_twice: int
    forwarded: int  # forwardable events answered 2xx
    forwarded_lost: int
    forwarded_duplicates: int  # alerts at the sink beyond the first of their external_id
    duplicate_share: float
    status_503: int
    connection_errors: int
    status_500: int  # any 5xx but 503
    unexpected: int  # any other non-2xx answer, or a partly accepted request
    recovery: dict[str, float | None]  # failure name -> seconds
    restarts: dict[str, int]
    seconds: float  # wall time from the first post to everything audited and forwarded
    failures: list[str] = field(default_factory=list)
    probe_latency_p50: float | None = None  # seconds from post to audited and forwarded
    probe_latency_max: float | None = None
    # What beat's reconcile_ledger brought back (the broker had lost it), from the workers' logs.
    republished_batches: int = 0
    republished_alerts: int = 0
    # failure name -> seconds until ingest answered 2xx again (None: never, within the run)
    accepting: dict[str, float | None] = field(default_factory=dict)
    # A bound on duplicates in alerts, where a test states one; None: DUPLICATE_SHARE_LIMIT.
    duplicates_allowed: int | None = None

    def problems(self) -> list[str]:
        """The checks this run failed (empty: it passed)."""
        found = []
        if self.lost:
            found.append(f"{self.lost} accepted events never audited")
        if self.audited_twice:
            found.append(f"{self.audited_twice} events audited twice")
        if self.forwarded_lost:
            found.append(f"{self.forwarded_lost} forwardable events never reached the sink")
        if self.duplicates_allowed is not None:
            if self.forwarded_duplicates > self.duplicates_allowed:
                found.append(f"{self.forwarded_duplicates} duplicates, more than the "
                             f"{self.duplicates_allowed} allowed")  # fmt: skip
        elif self.duplicate_share > DUPLICATE_SHARE_LIMIT:
            found.append(f"{self.forwarded_duplicates} duplicates ({self.duplicate_share:.3%})")
        if self.status_500 or self.unexpected:
            found.append(f"answers other than 2xx/503: {self.failures}")
        for name, seconds in self.recovery.items():
            if seconds is None:
                found.append(f"no recovery after {name}")
        return found

    def row(self) -> str:
        """One markdown table row (see :data:`TABLE_HEADER`)."""
        recovery = ", ".join(f"{k} {v}" if v is not None else f"{k} never"
                             for k, v in self.recovery.items())  # fmt: skip
        return (
            f"| {self.name} | {self.events:,} | {self.lost} | {self.audited_twice} | "
            f"{self.forwarded_duplicates} of {self.forwarded:,} ({self.duplicate_share:.3%}) | "
            f"{self.status_503} | {self.connection_errors} | {recovery} | {self.seconds} |"
        )


TABLE_HEADER = (
    "| failure | events | lost | audited twice | forwarded duplicates | 503 | connection errors "
    "| recovery (s) | run (s) |\n|---|---|---|---|---|---|---|---|---|"
)


def report(name: str, figures: ChaosFigures) -> None:
    """Print ``figures`` as a table row; append them as JSON to $MUTT_CHAOS_REPORT when set."""
    print(f"\n{TABLE_HEADER}\n{figures.row()}")
    for failure, seconds in figures.accepting.items():
        print(f"ingest answered 2xx again {seconds} s after {failure}")
    append_report({"test": name, **asdict(figures)})


def append_report(record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line to $MUTT_CHAOS_REPORT, when it is set."""
    path = os.environ.get("MUTT_CHAOS_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(record) + "\n")


def audit_counts(engine: Engine) -> Counter[str]:
    """correlation_id -> number of audit rows."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(EventAuditLog.correlation_id, func.count()).group_by(
                EventAuditLog.correlation_id
            )
        ).all()
    return Counter({str(cid): n for cid, n in rows})


REPUBLISHED = re.compile(rb"republished (\d+) (accepted batches|alerts)")


def republished(stack: Stack) -> tuple[int, int]:
    """(classify batches, alerts) that reconcile_ledger republished, as its log lines say."""
    batches = alerts = 0
    for path in stack.logdir.glob("*.log"):
        for count, what in REPUBLISHED.findall(path.read_bytes()):
            if what == b"alerts":
                alerts += int(count)
            else:
                batches += int(count)
    return batches, alerts


def verify(
    name: str,
    stack: Stack,
    accepted: Mapping[str, bool],
    tally: Tally,
    sink: SinkLog,
    recovery: Mapping[str, float | None],
    restarts: Mapping[str, int],
    seconds: float,
    timeout: float = 90,
    check: bool = True,
) -> ChaosFigures:
    """Wait (up to ``timeout``) for every accepted event to be audited and every forwardable one
    to reach the sink, then measure; with ``check``, assert the chaos checks (module docstring).

    ``accepted`` maps each correlation_id answered 2xx to whether it is forwardable; ``seconds``
    is the run's wall time so far (the wait for completion is added to it).
    """
    expected = {cid for cid, forwardable in accepted.items() if forwardable}

    def arrived() -> set[str]:
        return {str(e.get("external_id")) for e in sink.refresh()}

    def complete() -> bool:
        return stack.audited() >= len(accepted) and expected <= arrived()

    began = time.time()
    with contextlib.suppress(TimeoutError):
        wait_for(complete, timeout, "every accepted event audited and forwarded", interval=0.5)
    seconds += time.time() - began
    stack.settle(2)  # anything still in flight (a redelivered copy) shows up as a duplicate
    counts = audit_counts(stack.engine)
    received = [str(e.get("external_id")) for e in sink.refresh()]
    ours = Counter(r for r in received if r in expected)
    duplicates = sum(n - 1 for n in ours.values())
    with tally.lock:
        statuses = Counter(tally.statuses)
        figures = ChaosFigures(
            name=name,
            events=len(accepted),
            lost=sum(1 for cid in accepted if cid not in counts),
            audited_twice=sum(1 for cid in accepted if counts.get(cid, 0) > 1),
            forwarded=len(expected),
            forwarded_lost=len(expected - set(ours)),
            forwarded_duplicates=duplicates,
            duplicate_share=duplicates / max(len(expected), 1),
            status_503=statuses[503],
            connection_errors=tally.connection_errors,
            status_500=sum(n for s, n in statuses.items() if s >= 500 and s != 503),
            unexpected=sum(n for s, n in statuses.items() if s < 500 and s not in (200, 202)),
            recovery=dict(recovery),
            restarts=dict(restarts),
            seconds=round(seconds, 1),
            failures=list(tally.failures),
        )
    figures.republished_batches, figures.republished_alerts = republished(stack)
    if check:
        problems = figures.problems()
        assert not problems, f"{name}: {problems}\n{figures}\n{stack.logs()}"
    return figures


# --- one run -----------------------------------------------------------------------------------


class ChaosRun:
    """Load, probe and supervisor over a started stack; the test causes failures in between.

    Use as a context manager (everything is stopped on the way out, passed or not)::

        with ChaosRun(stack) as run:
            run.wait_progress(0.2)
            run.wait_recovered(run.kill("classify"))
            figures = run.finish("classify kill")
    """

    def __init__(
        self,
        stack: Stack,
        *,
        events: int = 20_000,
        senders: int = 4,
        per_request: int = 100,
        rate: float = 600.0,
        restart_sec: float = 1.0,
    ) -> None:
        self.stack = stack
        self.load = Load(stack.ingest_url, senders, events, per_request, rate)
        self.sink = SinkLog(f"http://127.0.0.1:{stack.sink_port}/events")
        self.probe = Probe(stack, self.sink, self.load.tally)
        self.supervisor = Supervisor(stack, restart_sec)
        self.failures: list[Failure] = []
        self.recovery: dict[str, float | None] = {}

    def __enter__(self) -> ChaosRun:
        self.supervisor.__enter__()
        self.probe.start()
        self.load.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.load.stop()
        self.probe.stop()
        self.supervisor.stop()

    def failure(self, name: str) -> Failure:
        """Record that failure ``name`` happens now (call it right before causing it)."""
        failure = Failure(name, time.time())
        self.failures.append(failure)
        self.recovery[name] = None
        return failure

    def kill(self, part: str, name: str | None = None) -> Failure:
        """SIGKILL the process group of stack part ``part``; the supervisor restarts it."""
        process: Process = self.stack.processes[part]
        failure = self.failure(name or f"{part} SIGKILL")
        process.kill()
        return failure

    def wait_progress(self, share: float, timeout: float = 120) -> None:
        """Block until ``share`` of the load's events are accepted."""
        goal = int(self.load.total * share)
        wait_for(lambda: self.load.accepted_count >= goal, timeout,
                 f"{goal} events accepted", interval=0.1)  # fmt: skip

    def wait_recovered(self, failure: Failure, timeout: float = 60) -> float:
        """Block until the pipeline flows again after ``failure``; records and returns seconds."""
        seconds = self.probe.wait_recovered(failure, timeout)
        self.recovery[failure.name] = seconds
        return seconds

    def wait_steady(
        self, max_latency: float = 1.0, timeout: float = 60, strict: bool = True
    ) -> bool:
        """Block until probes flow through in ``max_latency`` seconds again (no backlog left),
        so that the next failure's recovery is not the last one's backlog draining.

        Not ``strict``: give up after ``timeout`` and return False (a machine busy with other
        work may never get that fast; the run goes on rather than letting the load end first).
        """
        try:
            wait_for(lambda: self.probe.steady(max_latency), timeout,
                     "the pipeline to be steady", interval=0.5)  # fmt: skip
        except TimeoutError:
            if strict:
                raise
            return False
        return True

    def finish(
        self,
        name: str,
        timeout: float = 90,
        check: bool = True,
        duplicates_allowed: int | None = None,
    ) -> ChaosFigures:
        """Let the load end, then verify and report the run as ``name``.

        ``duplicates_allowed``: the run's own bound on duplicate alerts, instead of the share.
        """
        assert self.load.join(timeout), "the senders did not finish"
        self.probe.stop()
        accepted = dict(self.load.accepted)
        accepted.update((cid, True) for cid, _ in self.probe.posted)
        figures = verify(
            name,
            self.stack,
            accepted,
            self.load.tally,
            self.sink,
            self.recovery,
            self.supervisor.restarts,
            time.time() - self.load.started_at,
            timeout=timeout,
            check=False,
        )
        # Measured now that every accepted probe is complete (verify waited for that): a probe
        # posted after a late failure may have been the last to come out.
        for failure in self.failures:
            if self.recovery.get(failure.name) is None:
                self.recovery[failure.name] = self.probe.recovery(failure)
        figures.recovery = dict(self.recovery)
        figures.accepting = {f.name: self.load.tally.accepting(f) for f in self.failures}
        figures.duplicates_allowed = duplicates_allowed
        latencies = self.probe.latencies()
        if latencies:
            figures.probe_latency_p50 = round(latencies[len(latencies) // 2], 2)
            figures.probe_latency_max = round(latencies[-1], 2)
        report(name, figures)
        if check:
            problems = figures.problems()
            assert not problems, f"{name}: {problems}\n{figures}\n{self.stack.logs()}"
        return figures
