"""SIGKILL each MUTT process kind in turn during one 20,000-event run: nothing is lost.

Beat, ingest (the gunicorn master and its worker), the classify worker (prefork parent and
children) and the forward worker are each killed as a crash or the OOM killer would, while four
senders post; the supervisor restarts each a second later, as systemd would. The harness checks that every
event answered 2xx is audited once, every forwardable one reached Moog with at most 0.1 %
duplicates, the senders saw only 2xx, 503 or a refused connection, and how long each kill stopped
the flow (tests/chaos/harness.py).

How each kill is survived:
- ingest: a request cut off is re-posted by its sender; what it had already published is audited
  once (idempotent on correlation_id), what it had recorded but not published reconcile republishes;
- classify: its unacked batches come back once their lease lapses (BROKER_VISIBILITY_TIMEOUT, as
  shipped); one taken off the queue but not yet recorded as unacked (kombu #305) comes back
  through the ledger's reconcile;
- forward: the same, through the outbox; the one batch it had posted but not recorded as sent is
  posted again (the duplicate bound);
- beat: RedBeat's lock expires and the restarted beat schedules again; nothing flows through beat.
"""

from __future__ import annotations

import pytest

from tests.chaos.conftest import ChaosStackFactory
from tests.chaos.harness import ChaosRun

# (share of the load accepted before the kill, stack part). Beat goes first: a SIGKILLed beat
# holds RedBeat's lock until it expires (BEAT_LOCK_TIMEOUT, 30 s), and until then nothing
# reconciles; killed first, it is back before the later kills' losses are overdue.
KILLS = ((0.1, "beat"), (0.3, "ingest"), (0.5, "classify"), (0.7, "forward"))


@pytest.mark.slow
def test_each_process_kind_killed_in_turn_loses_nothing(chaos_stack: ChaosStackFactory) -> None:
    stack = chaos_stack()
    with ChaosRun(stack) as run:
        for share, part in KILLS:
            run.wait_progress(share)
            # With the last kill's backlog gone this one is measured alone; but a machine too busy
            # to get there goes on after a few seconds, so that every kill lands mid-run. Recovery
            # is measured afterwards, from the probes (ChaosRun.finish).
            run.wait_steady(max_latency=1.5, timeout=3, strict=False)
            assert run.load.accepted_count < run.load.total, f"{part}: the load had ended"
            run.kill(part)
        figures = run.finish("process kills (beat, ingest, classify, forward)")
    for _, part in KILLS:
        assert figures.restarts.get(part, 0) >= 1, f"{part} was not restarted"
        assert stack.processes[part].alive
    assert figures.events >= 20_000
