"""The quick reference's processing-list depths on a real worker: the classify and forward messages
it holds (delivered and not yet acknowledged, here waiting for their countdown), served on the
worker's /metrics, and back to nothing once they are done."""

from __future__ import annotations

import uuid

import pytest

from mutt_app.config import load_settings
from mutt_app.names import CLASSIFY_QUEUE, CLASSIFY_TASK, FORWARD_TASK, PAGE_QUEUE, TICKET_QUEUE
from mutt_app.runtime import Runtime
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import FORWARD_QUEUES
from tests.services import wait_for


def _depths(samples: dict[str, float]) -> tuple[float, float]:
    return (
        samples.get("mutt_alerter_processing_list_depth", -1),
        samples.get("mutt_moog_processing_list_depth", -1),
    )


@pytest.mark.slow
def test_held_messages_are_each_stages_processing_list_depth(make_stack: StackFactory) -> None:
    stack = make_stack(BROKER_VISIBILITY_TIMEOUT="5")  # a renewal, which samples, every second
    stack.start_worker(
        "worker",
        queues=f"{CLASSIFY_QUEUE},{FORWARD_QUEUES}",
        concurrency=4,
        pool="threads",
    )
    app = Runtime(load_settings(stack.env)).celery
    wait_for(lambda: _depths(stack.worker_metrics()) == (0, 0), 15, "nothing held at first")

    for _ in range(2):
        app.send_task(CLASSIFY_TASK, args=[[], uuid.uuid4().hex], queue=CLASSIFY_QUEUE, countdown=6)
    for queue in (TICKET_QUEUE, TICKET_QUEUE, PAGE_QUEUE):
        app.send_task(FORWARD_TASK, args=[[]], queue=queue, countdown=6)
    wait_for(lambda: _depths(stack.worker_metrics()) == (2, 3), 5, "2 classify and 3 forward held")
    # Run once the countdown is up (empty batches: nothing to do), and acknowledged.
    wait_for(lambda: _depths(stack.worker_metrics()) == (0, 0), 20, "nothing held once done")
