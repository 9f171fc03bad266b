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
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select

from mutt_app.db.models import EventAuditLog
from mutt_app.worker.shape import CLASSIFY_QUEUES
from tests.chaos.load import Load, Tally, seed_rules
from tests.chaos.recovery import Failure, Probe, SinkLog
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

# Duplicates allowed among forwarded alerts.
DUPLICATE_SHARE_LIMIT = 0.001
# The chaos process names of start_pipeline, as a test names them to ChaosRun.kill.
PARTS = ("sink", "ingest", "classify", "forward", "beat")


def start_pipeline(
    stack: Stack,
    *,
    forward_threads: int = 1,
    classify_concurrency: int = 2,
    classify_workers: int = 1,
    forward_workers: int = 1,
    classify_pool: str = "solo",
) -> Stack:
    """Seed the chaos rules (:data:`tests.chaos.load.RULES`) and start every part, as the deploy kit runs them (one unit each).

    The classify worker consumes mutt.classify and mutt.maintenance in one solo-pool process
    (mutt-worker-classify@.service: a host runs several, each its own worker), or with
    ``classify_pool="prefork"`` in ``classify_concurrency`` pool processes; the forward worker both
    forward lanes in threads (mutt-worker-forward.service), beat RedBeat.
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
                if classify_pool == "solo":
                    stack.start_classify_worker(classify[rank])
                else:
                    stack.start_worker(classify[rank], queues=CLASSIFY_QUEUES,
                                       concurrency=classify_concurrency, pool=classify_pool)  # fmt: skip
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
