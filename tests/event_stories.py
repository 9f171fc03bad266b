"""Events with a story to tell, made by the real pipeline on the test's PostgreSQL and Redis: one
sent to Moog, one held (a repeat of the sent one) and one that Moog refused (dead-lettered).

classify_batch audits them and records the forwardable alerts in the outbox; the real
forward_to_moog task then posts them (run in-process with ``apply``) to the local Moog sink, told
to refuse the events that carry a marker. Shared by the event page's integration and browser tests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from mutt_app.classify.batch import classify_batch
from mutt_app.config import Settings
from mutt_app.db.models import AlertRule
from mutt_app.devtools.moog_sink import Mode, SinkState, create_sink_app, make_sink_server
from mutt_app.names import FORWARD_TASK
from mutt_app.rules.cache import bump_rules_version
from mutt_app.runtime import Runtime, runtime_of
from tests.factories import wire_event

REFUSED = "REFUSE-ME"
"""The sink refuses (400) a request carrying an event whose message has this."""


@dataclass(frozen=True)
class Stories:
    """The correlation_ids of the three events, and the rule that decided them."""

    sent: str
    held: str
    dead_lettered: str
    rule_id: int


@contextmanager
def moog_sink() -> Iterator[str]:
    """The local Moog sink on a free port, refusing events marked :data:`REFUSED`; its URL."""
    state = SinkState()
    state.set_mode(Mode(reject_marker=REFUSED))
    server = make_sink_server("127.0.0.1", 0, create_sink_app(state, echo=lambda _line: None))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/webhook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def make_stories(settings: Settings, sessions: sessionmaker[Session], sink_url: str) -> Stories:
    """Classify three events and forward what classify let through; their ids."""
    with sessions.begin() as session:
        rule = AlertRule(
            match_string="LINK-DOWN",
            match_type="contains",
            prod_handling="Page_and_ticket",
            dev_handling="Log_only",
            team_assignment="NETO",
        )
        session.add(rule)
        session.flush()
        rule_id = rule.id
    celery = Runtime(settings.model_copy(update={"moog_webhook_url": sink_url})).celery
    celery.loader.import_default_modules()  # the tasks, forward_to_moog among them
    runtime = runtime_of(celery)
    bump_rules_version(runtime.redis)
    wires = [
        wire_event("core-sw-01", "LINK-DOWN Gi0/1 (flap 1041)"),
        wire_event("core-sw-01", "LINK-DOWN Gi0/1 (flap 1042)"),  # a repeat: held
        wire_event("core-sw-02", f"LINK-DOWN Gi0/7 {REFUSED}"),
    ]
    classify_batch(runtime, celery, wires)
    # What classify published, from the outbox (one entry per alert), through the forward task.
    for batch in runtime.outbox.overdue(older_than=-3600):
        celery.tasks[FORWARD_TASK].apply(args=[batch.events]).get()
    sent, held, refused = (str(wire["correlation_id"]) for wire in wires)
    return Stories(sent=sent, held=held, dead_lettered=refused, rule_id=rule_id)
