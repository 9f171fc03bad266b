"""A worker lost for good mid-load: the surviving worker takes up its batches within seconds.

Issue 21: when a classify or forward worker dies as a whole (SIGKILL of a classify worker's solo
process or of a forward worker, or the host gone), its in-flight batches are taken up again within 15 s at the shipped
settings, and the pages among them reach Moog within the same 15 s.

Each test runs two classify workers (one solo-pool process each, as mutt-worker-classify@.service)
and two forward workers (threads, as mutt-worker-forward.service), as on two hosts, under the chaos load; then it
SIGKILLs one worker of one kind while that worker holds a task whose work is not yet settled (in
the ledger or the outbox), and does not restart it (the host is gone). How it is survived
(mutt_app.redelivery): every live worker renews the lease of the messages it holds, so only the dead
worker's leases lapse; BROKER_VISIBILITY_TIMEOUT later the live workers' restore scans put those
messages back at the head of their queues. In the forward test Moog answers after a tenth of a
second and the kill comes mid-post: the copy handed out again takes over its own task's in-flight
claims (mutt_app.tasks.forward.deliver) instead of waiting for them to expire.

Settings: the recovery path runs as shipped (:data:`SHIPPED`: the lease, the restore scan, the
ledger's reconcile, Moog's timeout and batch size, retries and breaker); the rest of CHAOS_ENV only
makes each forwardable event one alert at the sink (no dedup or storm budgets, a local sink's
rate limit).

Checks, besides the harness's (every event answered 2xx audited once, every forwardable one at
the sink):
- the kill caught a task in flight, which its worker had kept under lease until it died;
- no live worker's message was handed out a second time (each task id received once among them);
- every page accepted before the kill reached the sink within :data:`PAGE_DEADLINE` of the kill
  (issue 21's bound, not a speed);
- duplicates within the stated bound: a classify batch run again audits nothing twice (the audit
  is idempotent on correlation_id) and posts nothing twice (the forward sent keys); a forward
  worker posts again at most what its threads had posted without recording it as sent, one batch
  each: FORWARD_THREADS x MOOG_BATCH_SIZE alerts.

Figures (printed, and appended to $MUTT_CHAOS_REPORT; BENCHMARKS.md): seconds from the kill until
the dead worker's last held task was received again by a live worker and until it was completed,
the latest page, forwardable alert and audit of what was accepted before the kill, duplicates and
in-flight claims taken over.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest
import redis
import requests
from kombu.transport.redis import Channel as RedisChannel
from sqlalchemy import select

from mutt_app.config import Settings
from mutt_app.db.models import EventAuditLog
from mutt_app.forwarding import lanes
from mutt_app.ledger import OUTBOX, Ledger
from mutt_app.names import CLASSIFY_TASK, FORWARD_TASK
from tests import broker_messages
from tests.chaos.conftest import ChaosStackFactory
from tests.chaos.harness import ChaosRun, Failure, append_report, worker_names
from tests.e2e.stack import Process, Stack
from tests.services import wait_for

# Issue 21: a dead worker's pages reach Moog within this many seconds of its death.
PAGE_DEADLINE = 15.0
# The settings recovery depends on, at their shipped values (CHAOS_ENV shortens some of them).
SHIPPED = {
    name.upper(): str(Settings.model_fields[name].default)
    for name in (
        "broker_visibility_timeout",
        "broker_restore_interval",
        "ledger_reconcile_after",
        "moog_batch_size",
        "moog_webhook_timeout",
        "moog_retry_base_delay",
        "moog_retry_max_delay",
        "moog_circuit_breaker_timeout",
    )
}
FORWARD_THREADS = 2
# Long enough for two lease renewals of every live worker (one per lease/5 s), short of the lease.
RENEWALS_SEEN_AFTER = 4.0
TASK_LINE = re.compile(r"Task ([\w.]+)\[([0-9a-f-]{36})\] (\w+)")
TAKEN_OVER = re.compile(r"took over the in-flight claim of (\d+) alerts")
WORKERS = ("classify", "forward")  # the stack names of workers (start_pipeline)


# --- what a worker holds ---------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    """One message a worker holds (delivered, not acked): kombu's ``unacked`` entry for it."""

    tag: str
    task: str
    task_id: str
    score: float  # its lease: when it was delivered or last renewed
    batch_id: str | None = None  # classify
    alerts: tuple[str, ...] = ()  # forward: the external_ids
    pages: tuple[str, ...] = ()


def held_messages(client: redis.Redis) -> dict[str, Held]:
    """Every held message, by delivery tag (all workers share the ``unacked`` hash)."""
    pipe = client.pipeline(transaction=True)
    pipe.hgetall(RedisChannel.unacked_key)
    pipe.zrange(RedisChannel.unacked_index_key, 0, -1, withscores=True)
    entries, scores = pipe.execute()
    leases = {tag.decode(): score for tag, score in scores}
    held = {}
    for raw_tag, raw in entries.items():
        tag = raw_tag.decode()
        message = broker_messages.envelope(raw)
        headers = message["headers"]
        args, kwargs, _ = json.loads(broker_messages.body(message))
        batch_id, alerts = None, []
        if headers["task"] == CLASSIFY_TASK:
            batch_id = kwargs.get("batch_id") or args[1]
        elif headers["task"] == FORWARD_TASK:
            given = args[0] if args else kwargs["alerts"]
            alerts = [given] if isinstance(given, dict) else given
        held[tag] = Held(
            tag,
            headers["task"],
            headers["id"],
            leases.get(tag, 0.0),
            batch_id,
            tuple(str(a["external_id"]) for a in alerts),
            tuple(str(a["external_id"]) for a in alerts if lanes.is_page(a)),
        )
    return held


class TaskLog:
    """A worker's "Task name[id] received / succeeded / ..." lines, read as they are written, each
    stamped with when this reader first saw it."""

    def __init__(self, process: Process) -> None:
        self.path = process.log_path
        self.offset = 0
        self.partial = b""
        self.received: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.names: dict[str, str] = {}

    def read(self) -> TaskLog:
        now = time.time()
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        self.offset += len(chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        for line in lines:
            if b"] received" not in line and b"Task " not in line:
                continue
            found = TASK_LINE.search(line.decode(errors="replace"))
            if found:
                name, task_id, what = found.groups()
                self.names[task_id] = name
                seen = self.received if what == "received" else self.ended
                seen.setdefault(task_id, now)
        return self

    def unfinished(self, task: str | None = None) -> set[str]:
        """Ids received and not ended (of ``task``, or any)."""
        return {
            i
            for i in self.received
            if i not in self.ended and (task is None or self.names.get(i) == task)
        }


# --- the run ----------------------------------------------------------------------------------


@dataclass
class WorkerLoss:
    """What one worker loss measured (seconds are from the kill)."""

    name: str
    killed: str
    held: list[dict[str, Any]] = field(default_factory=list)  # the dead worker's tasks
    taken_up: float | None = None  # the last of them received again by a survivor
    completed: float | None = None  # the last of them finished (its alerts settled, for forward)
    pages_before_kill: int = 0
    page_latest: float | None = None  # the latest first arrival of a page accepted before the kill
    forwarded_latest: float | None = None  # the same for every forwardable event
    audit_latest: float | None = None  # the latest audit of an event accepted before the kill
    duplicates: int = 0
    duplicates_allowed: int = 0
    claims_taken_over: int = 0  # alerts whose in-flight claim a survivor took over (forward)

    def show(self) -> str:
        return (
            f"{self.name}: {len(self.held)} held tasks taken up again after {self.taken_up} s, "
            f"completed after {self.completed} s; latest of {self.pages_before_kill} pages "
            f"accepted before the kill at the sink {self.page_latest} s after it (forwardable: "
            f"{self.forwarded_latest} s, audits: {self.audit_latest} s); "
            f"{self.duplicates} duplicate alerts (bound {self.duplicates_allowed}); "
            f"{self.claims_taken_over} in-flight claims taken over"
        )


def unsettled(client: redis.Redis, held: Held) -> bool:
    """Whether ``held``'s work is still to be done: its batch is in the ledger (classify), or one of
    its alerts in the outbox (forward)."""
    if held.batch_id is not None:
        return bool(client.hexists(Ledger(client).payloads, held.batch_id))
    return any(client.hmget(Ledger(client, OUTBOX).payloads, list(held.alerts)))


def kill_while_holding(
    run: ChaosRun, part: str, task: str, running_for: float = 0.0, timeout: float = 60
) -> tuple[Failure, set[str]]:
    """SIGKILL worker ``part`` (its process group) while it holds a ``task`` it received
    ``running_for`` seconds ago and has not finished, whose work is still unsettled, and leave it
    down, as a host gone. The failure, and the events accepted before it."""
    log = TaskLog(run.stack.processes[part])
    client = redis.Redis.from_url(run.stack.env["REDIS_URL"])

    def holding() -> bool:
        since = time.time() - running_for
        ids = {i for i in log.read().unfinished(task) if log.received[i] <= since}
        return bool(ids) and any(
            unsettled(client, h) for h in held_messages(client).values() if h.task_id in ids
        )

    # A batch takes milliseconds: a worker seen holding one may have finished it by the time the
    # kill lands. So look while it is stopped (SIGSTOP), and kill it still stopped, or let it go on.
    group = run.stack.processes[part].popen.pid  # type: ignore[union-attr]

    def stopped_holding() -> bool:
        os.killpg(group, signal.SIGSTOP)
        held = False
        try:
            held = holding()
        finally:
            if not held:
                os.killpg(group, signal.SIGCONT)
        return held

    wait_for(stopped_holding, timeout, f"{part} to hold a {task}", interval=0.002)
    accepted = set(run.load.accepted)
    failure = run.kill(part, f"{part} lost")
    return failure, accepted | {c for c, at in list(run.probe.posted) if at < failure.at}


def lapsed_leases(client: redis.Redis, before: Mapping[str, Held]) -> dict[str, Held]:
    """Of ``before``, the messages still held under the very same lease: nobody renewed them."""
    now = held_messages(client)
    return {t: h for t, h in before.items() if t in now and now[t].score == h.score}


def track_takeover(
    client: redis.Redis, survivors: list[Process], doomed: Mapping[str, Held], killed_at: float
) -> tuple[float, float]:
    """Wait for the live workers to run the dead worker's tasks again; (taken up, completed)
    seconds after the kill. A forward task is complete when its alerts are settled in the outbox
    (a copy that found an alert in flight defers it to a new task)."""
    logs = [TaskLog(p) for p in survivors]
    outbox = Ledger(client, OUTBOX)
    ids = {h.task_id for h in doomed.values()}
    alerts = [a for h in doomed.values() for a in h.alerts]
    taken: dict[str, float] = {}
    ended: dict[str, float] = {}
    settled_at: list[float] = []

    def done() -> bool:
        for log in logs:
            log.read()
            taken.update((i, t) for i, t in log.received.items() if i in ids and i not in taken)
            ended.update((i, t) for i, t in log.ended.items() if i in ids and i not in ended)
        if alerts and not settled_at and not any(client.hmget(outbox.payloads, alerts)):
            settled_at.append(time.time())
        return len(ended) == len(ids) and (not alerts or bool(settled_at))

    wait_for(done, 90, "the survivors to run the dead worker's tasks", interval=0.1)
    return (
        round(max(taken.values()) - killed_at, 1),
        round(max([*ended.values(), *settled_at]) - killed_at, 1),
    )


def run_worker_loss(
    chaos_stack: ChaosStackFactory,
    kind: str,
    task: str,
    duplicates_allowed: int,
    moog_delay: float = 0.0,
) -> WorkerLoss:
    """The whole test for a worker of ``kind`` (classify or forward), killed holding a ``task``;
    the Moog sink answers each post after ``moog_delay`` seconds, and the kill comes half of that
    into a task (mid-post, when the task posts)."""
    stack = chaos_stack(
        classify_workers=2, forward_workers=2, forward_threads=FORWARD_THREADS, **SHIPPED
    )
    if moog_delay:
        control = f"http://127.0.0.1:{stack.sink_port}/_control"
        requests.post(control, json={"delay": moog_delay}, timeout=5).raise_for_status()
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    doomed_name = worker_names(kind, 2)[0]
    name = f"whole {kind} worker lost"
    loss = WorkerLoss(name, doomed_name, duplicates_allowed=duplicates_allowed)
    live = [p for n, p in stack.processes.items() if n.startswith(WORKERS) and n != doomed_name]
    with ChaosRun(stack) as run, run.supervisor.pause(doomed_name):
        run.wait_progress(0.4)
        run.wait_steady(max_latency=1.5, timeout=10, strict=False)
        failure, accepted_before = kill_while_holding(
            run, doomed_name, task, running_for=moog_delay / 2
        )
        at_kill = held_messages(client)
        dead_log = TaskLog(stack.processes[doomed_name]).read()
        time.sleep(max(failure.at + RENEWALS_SEEN_AFTER - time.time(), 0))
        lapsed = lapsed_leases(client, at_kill)
        doomed = {t: h for t, h in at_kill.items() if h.task_id in dead_log.unfinished()}
        loss.held = [asdict(h) for h in doomed.values()]
        assert any(h.task == task for h in doomed.values()), (
            f"the kill caught no {task} in flight: {at_kill}"
        )
        # The dead worker renewed its leases until it died (else they would have lapsed already).
        assert set(doomed) <= set(lapsed), {t: h for t, h in doomed.items() if t not in lapsed}
        loss.taken_up, loss.completed = track_takeover(client, live, lapsed, failure.at)
        figures = run.finish(name, duplicates_allowed=duplicates_allowed)
    assert not stack.processes[doomed_name].alive and not run.supervisor.restarts[doomed_name]
    # No live worker's lease lapsed: none of their messages was handed out a second time.
    received = Counter(i for p in live for i in TaskLog(p).read().received)
    assert not [i for i, n in received.items() if n > 1], received.most_common(3)
    loss.duplicates = figures.forwarded_duplicates
    loss.claims_taken_over = sum(int(n) for p in live for n in TAKEN_OVER.findall(p.tail(None)))
    measure_after_kill(stack, run, accepted_before, failure.at, loss)
    print(f"\n{loss.show()}")
    append_report({"test": f"{name} (recovery)", **asdict(loss)})
    return loss


def measure_after_kill(
    stack: Stack, run: ChaosRun, accepted: set[str], killed_at: float, loss: WorkerLoss
) -> None:
    """Fill ``loss``'s latest arrivals and audits of what was accepted before the kill."""
    first: dict[str, dict[str, Any]] = {}
    for event in run.sink.refresh():
        first.setdefault(str(event.get("external_id")), event)
    forwardable = [c for c in accepted if run.load.accepted.get(c, True)]
    arrivals = [first[c]["_received_at"] - killed_at for c in forwardable if c in first]
    pages = [first[c]["_received_at"] - killed_at for c in forwardable
             if c in first and lanes.is_page(first[c])]  # fmt: skip
    loss.pages_before_kill = len(pages)
    loss.forwarded_latest = round(max(arrivals), 1)
    loss.page_latest = round(max(pages), 1)
    ids = [uuid.UUID(c) for c in accepted]
    with stack.engine.connect() as conn:
        audited = [
            at.timestamp()
            for (at,) in conn.execute(
                select(EventAuditLog.audited_at).where(EventAuditLog.correlation_id.in_(ids))
            )
        ]
    loss.audit_latest = round(max(audited) - killed_at, 1)


@pytest.mark.slow
def test_a_lost_classify_worker_s_batches_run_on_the_other_within_seconds(
    chaos_stack: ChaosStackFactory,
) -> None:
    # A batch run again is audited once (idempotent on correlation_id) and forwarded once.
    loss = run_worker_loss(chaos_stack, "classify", CLASSIFY_TASK, duplicates_allowed=0)
    assert loss.page_latest is not None and loss.page_latest <= PAGE_DEADLINE, loss.show()


@pytest.mark.slow
def test_a_lost_forward_worker_s_alerts_reach_moog_through_the_other_within_seconds(
    chaos_stack: ChaosStackFactory,
) -> None:
    # Each thread may have posted one batch that it did not live to record as sent.
    bound = FORWARD_THREADS * int(SHIPPED["MOOG_BATCH_SIZE"])
    # Moog answering after 0.4 s, as a slow remote one does, the kill (0.2 s into a post) catches
    # posts on the wire: their in-flight claims outlive the worker, and the copies handed out again
    # take them over (mutt_app.tasks.forward.deliver). A shorter answer left too little time,
    # on a loaded machine, between seeing a post under way and the kill.
    loss = run_worker_loss(
        chaos_stack, "forward", FORWARD_TASK, duplicates_allowed=bound, moog_delay=0.4
    )
    assert loss.page_latest is not None and loss.page_latest <= PAGE_DEADLINE, loss.show()
