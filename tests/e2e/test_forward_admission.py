"""Every alert's shape and size checked before it is forwarded, on real workers and a real sink.

An alert with neither external_id nor signature used to get the idempotency key "None", so each
such alert after the first passed for a duplicate: not sent, not dead-lettered, not logged. And an
8 MiB alert was posted as is. Both now go to the poison store with the reason, and so does such an
alert when a person replays it from the dead-letter queue.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from mutt_app.cli import main
from mutt_app.config import load_settings
from mutt_app.db.models import DeadLetter, PoisonLetter
from mutt_app.forwarding.deadletters import add_dead_letter
from mutt_app.names import TICKET_QUEUE
from mutt_app.runtime import Runtime
from tests.e2e.alerts import publish_alerts
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import FORWARD_QUEUES, Stack
from tests.services import wait_for

MAX_BYTES = 4096


def _alert(description: str, **fields: object) -> dict:
    alert = {
        "signature": f"core-1::{uuid.uuid4().hex}",
        "source": "core-1",
        "external_id": str(uuid.uuid4()),
        "severity": 4,
        "description": description,
        "agent_time": int(datetime.now(UTC).timestamp()),
    }
    return {k: v for k, v in (alert | fields).items() if v is not None}


def _poison(stack: Stack) -> list[PoisonLetter]:
    with Session(stack.engine) as session:
        return list(session.scalars(select(PoisonLetter).order_by(PoisonLetter.id)))


def _stack(make_stack: StackFactory) -> Stack:
    stack = make_stack(MOOG_MAX_ALERT_BYTES=str(MAX_BYTES))
    with stack.together():
        stack.start_sink()
        stack.start_worker("forward", queues=FORWARD_QUEUES, concurrency=2, pool="threads")
    return stack


def test_keyless_and_oversize_alerts_are_poisoned_with_the_reason(
    make_stack: StackFactory,
) -> None:
    stack = _stack(make_stack)
    good = [_alert("link down"), _alert("link up")]
    keyless = [_alert(f"no id {i}", external_id=None, signature=None) for i in range(2)]
    oversize = _alert("x" * (MAX_BYTES + 1))
    publish_alerts(stack, [*good, oversize])
    # A keyless alert cannot come from classify (publish_forwards keys the outbox by external_id);
    # it comes as a message of its own, as a replayed or hand-made one does.
    celery = Runtime(load_settings(stack.env)).celery
    celery.send_task("mutt.forward_to_moog", args=[keyless], queue=TICKET_QUEUE)

    wait_for(lambda: len(_poison(stack)) == 3, 30, "3 poison items", interval=0.3)
    received = stack.wait_sink(2, timeout=30)
    assert sorted(a["external_id"] for a in received) == sorted(a["external_id"] for a in good)
    poison = _poison(stack)
    by_type = sorted((p.error_type, p.payload["alert"]["description"][:8]) for p in poison)
    assert by_type == [
        ("AlertTooLarge", "xxxxxxxx"),
        ("MalformedAlert", "no id 0"),
        ("MalformedAlert", "no id 1"),
    ]  # both keyless alerts, not one taken for a duplicate of the other
    (large,) = [p for p in poison if p.error_type == "AlertTooLarge"]
    assert f"over MOOG_MAX_ALERT_BYTES ({MAX_BYTES})" in large.reason
    assert all("neither an external_id nor a signature" in p.reason for p in poison if p != large)
    stack.settle(1.0)
    assert len(stack.sink_events()) == 2  # nothing of them was posted meanwhile


def test_a_replayed_malformed_dead_letter_is_poisoned_with_its_reason(
    make_stack: StackFactory,
) -> None:
    stack = _stack(make_stack)
    with Session(stack.engine) as session, session.begin():
        letter = add_dead_letter(
            session,
            task_name="mutt.forward_to_moog",
            queue="mutt.forward",
            payload={"alert": _alert("mangled", external_id=None, signature=None, severity=9)},
            error="Moog answered 400",
            backoff_base=3600,  # remediation leaves it be: a person replays it
        )
        session.flush()
        letter_id = letter.id
    replay = ["dlq", "replay", str(letter_id), "--reason", "Moog's parser was fixed"]
    result = CliRunner().invoke(main, replay, env=stack.env, catch_exceptions=False)
    assert result.exit_code == 0 and "replayed 1" in result.output, result.output

    wait_for(lambda: len(_poison(stack)) == 1, 30, "the replayed alert poisoned", interval=0.3)
    (poisoned,) = _poison(stack)
    assert poisoned.error_type == "MalformedAlert"
    assert "neither an external_id nor a signature" in poisoned.reason
    assert poisoned.payload["alert"]["description"] == "mangled"
    with Session(stack.engine) as session:
        assert session.scalars(select(DeadLetter)).all() == []  # one item, now in poison
    assert stack.sink_events() == []
