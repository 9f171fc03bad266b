"""How the classify worker is run: N solo-pool processes, each its own consumer.

A classify task is a whole batch of milliseconds, bounded by CLASSIFY_TIME_BUDGET_SECONDS, so the
prefork pool's parent (decoding each message, pickling it to a child and the result back) costs a
large share of the CPU for nothing a batch needs. N processes with ``-P solo`` consume
``mutt.classify`` and ``mutt.maintenance`` each on its own, and are supervised each on its own:
``mutt run`` (two parts), systemd (``mutt-worker-classify@1..N``, MUTT_CLASSIFY_CONCURRENCY of
them), Kubernetes (one per pod, the Deployment's replicas). What a solo pool changes, and how MUTT
keeps its promises under it: :mod:`mutt_app.redelivery` (leases renewed while a task runs),
:mod:`mutt_app.worker.health` (probes), :mod:`mutt_app.worker.reload` (SIGHUP).
"""

from __future__ import annotations

from collections.abc import Sequence

from mutt_app.names import CLASSIFY_QUEUE, MAINTENANCE_QUEUE

__all__ = ["CLASSIFY_QUEUES", "classify_worker_argv", "classify_worker_name"]

CLASSIFY_QUEUES = f"{CLASSIFY_QUEUE},{MAINTENANCE_QUEUE}"


def classify_worker_name(instance: int) -> str:
    """Celery's node name of classify process ``instance`` (1, 2, ...); ``%h`` is Celery's host."""
    return f"classify-{instance}@%h"


def classify_worker_argv(celery: Sequence[str], instance: int, loglevel: str = "INFO") -> list[str]:
    """The command of classify process ``instance`` of N, after ``celery`` (``celery -A mutt_app``).

    Gossip and mingle are off: each process would otherwise follow every other's heartbeats (and
    log a missed one whenever a peer runs a long maintenance job in its loop), and ask each of them
    at start for revoked tasks, which MUTT never revokes.
    """
    return [
        *celery, "worker", "-Q", CLASSIFY_QUEUES, "-P", "solo", "-l", loglevel,
        "-n", classify_worker_name(instance), "--without-gossip", "--without-mingle",
    ]  # fmt: skip
