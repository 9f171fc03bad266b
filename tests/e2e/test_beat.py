"""Beat for high availability: two beat processes side by side, each schedule fires once."""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.conftest import StackFactory

# Ten remediate-dlq and four reconcile-ledger ticks: enough for a second beat that also sent to
# show, and for the counts below.
RUN_SECONDS = 20


def _sent(log: str, entry: str) -> int:
    return len(re.findall(rf"Sending due task {re.escape(entry)} ", log))


@pytest.mark.slow
def test_two_beats_side_by_side_fire_each_schedule_once(make_stack: StackFactory) -> None:
    # remediate-dlq every 2 s; reconcile-ledger every 5 s (a quarter of LEDGER_RECONCILE_AFTER).
    stack = make_stack(REMEDIATION_INTERVAL_SECONDS="2", LEDGER_RECONCILE_AFTER="20")
    worker = stack.start_worker("maintenance", queues="mutt.maintenance", concurrency=1)
    beats = [stack.start_beat("beat1"), stack.start_beat("beat2")]
    time.sleep(RUN_SECONDS)

    logs = [beat.log_path.read_text(errors="replace") for beat in beats]
    for entry, interval in (("remediate-dlq", 2), ("reconcile-ledger", 5)):
        per_beat = [_sent(log, entry) for log in logs]
        expected = RUN_SECONDS / interval
        # One beat holds the lock and sends everything; the other sends nothing.
        assert sorted(per_beat)[0] == 0, (entry, per_beat)
        assert expected - 3 <= sum(per_beat) <= expected + 1, (entry, per_beat)

    # What was sent ran, once each (the last one may still be running).
    sent = sum(_sent(log, "remediate-dlq") for log in logs)
    ran = len(re.findall(r"mutt\.remediate_dlq\[[^\]]+\] succeeded", worker.log_path.read_text()))
    assert sent - 1 <= ran <= sent
