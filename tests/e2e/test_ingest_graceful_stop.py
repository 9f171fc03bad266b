"""Ingest stopped as a deploy stops it, while senders post.

SIGTERM to gunicorn's master (systemd's stop, Kubernetes' pod termination) stops the gevent worker
gracefully: it accepts no new connection and waits, up to graceful_timeout, for the requests in
flight, including those waiting for their publishing round, and for the round itself. So no sender
is answered 5xx by the stop, every event answered 200 is audited, and the master exits 0 well within
the timeout. Connections refused or reset once the listener closes are the sender's to retry, as
rsyslog's omhttp and syslog-ng's http() do.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import Counter

import orjson
import requests

from tests.e2e.conftest import StackFactory
from tests.factories import posted_event

SENDERS = 16
JSON = {"Content-Type": "application/json"}
# deploy/gunicorn/ingest.conf.py's graceful_timeout is 30 s; a stop takes far less.
STOP_WITHIN = 20.0


def test_sigterm_mid_load_answers_no_sender_5xx_and_loses_no_accepted_event(
    make_stack: StackFactory,
) -> None:
    stack = make_stack()
    with stack.together():
        stack.start_worker()
        stack.start_shipped_ingest(workers=1)
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    accepted: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def send(index: int) -> None:
        sent = 0
        while not stop.is_set():
            body = orjson.dumps([posted_event(f"graceful {index}-{sent}")])
            sent += 1
            try:
                response = stack.post(body, **JSON)
            except requests.ConnectionError as exc:
                with lock:
                    errors[type(exc).__name__] += 1
                time.sleep(0.05)
                continue
            with lock:
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    accepted.extend(response.json()["correlation_ids"])

    senders = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(SENDERS)]
    for thread in senders:
        thread.start()
    time.sleep(2)
    ingest = stack.processes["ingest"]
    assert ingest.popen is not None
    ingest.popen.send_signal(signal.SIGTERM)  # to the master only, as systemd's stop does
    started = time.monotonic()
    exit_code = ingest.popen.wait(STOP_WITHIN + 10)
    took = time.monotonic() - started
    time.sleep(0.5)  # the senders meet the closed port
    stop.set()
    for thread in senders:
        thread.join(35)
    print(f"\nstopped in {took:.1f} s; answers {dict(statuses)}; connection errors {dict(errors)}")
    assert exit_code == 0, ingest.tail()
    assert took < STOP_WITHIN, took
    assert set(statuses) == {200}, statuses  # the stop answered nobody 5xx
    assert statuses[200] > SENDERS, statuses  # the load was running when the stop came
    stack.wait_audited(len(accepted))
    audited = {row.correlation_id for row in stack.audit_rows()}
    assert {uuid.UUID(i) for i in accepted} <= audited
