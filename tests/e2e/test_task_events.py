"""Flower's task events from a real worker: every task sends them, classify_event only when asked."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from types import TracebackType

import pytest

from mutt_app.config import load_settings
from mutt_app.runtime import Runtime
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import Stack
from tests.factories import seed_pipeline
from tests.services import wait_for


class ReceivedTasks:
    """Listens to the broker's task events, as Flower does; ``names`` of the tasks received."""

    def __init__(self, stack: Stack) -> None:
        self.app = Runtime(load_settings(stack.env)).celery
        self.names: set[str] = set()
        self._listening, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)

    def __enter__(self) -> ReceivedTasks:
        self._thread.start()
        assert self._listening.wait(10), "no connection to the broker's events"
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(5)

    def _listen(self) -> None:
        with self.app.connection_for_read() as connection:
            receiver = self.app.events.Receiver(
                connection, handlers={"task-received": lambda e: self.names.add(e["name"])}
            )
            self._listening.set()
            while not self._stop.is_set():
                try:
                    receiver.capture(limit=None, timeout=0.5, wakeup=False)
                except TimeoutError:
                    continue


@pytest.mark.parametrize("classify_events", [True, False])
def test_classify_task_events_follow_the_setting(
    make_stack: StackFactory, classify_events: bool
) -> None:
    stack = make_stack(CLASSIFY_TASK_EVENTS=str(classify_events).lower())
    seed_pipeline(stack.engine)  # rule 1 forwards "CRITICAL ..." (Page_and_ticket)
    with stack.together():
        stack.start_sink().start_ingest()
        stack.start_worker()  # classify and forward in one worker: their events leave in that order
    event = {
        "timestamp": datetime.now(UTC).isoformat(),
        "hostname": "router-01",
        "message": "CRITICAL power supply failed",
    }
    with ReceivedTasks(stack) as received:
        assert stack.post(json.dumps(event)).status_code == 200
        stack.wait_sink(1)
        # The forward task's event proves the listener hears the worker; classify's came first.
        wait_for(lambda: "mutt.forward_to_moog" in received.names, 15, "forward's task event")
    assert ("mutt.classify_event" in received.names) is classify_events
