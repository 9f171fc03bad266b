"""A replay never multiplies work, on a real classify worker and PostgreSQL.

Replaying one classify dead letter of thousands of malformed events used to write one new dead
letter per event (50,000 of them from one, and more each time they were replayed). Now the events
that fail again stay together in one dead letter with each one's reason, and the good ones among
them are audited.
"""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mutt_app.cli import main
from mutt_app.db.models import DeadLetter, EventAuditLog
from mutt_app.forwarding.deadletters import add_dead_letter
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import Stack
from tests.factories import wire_event
from tests.services import wait_for

MALFORMED = 5000


def _letters(stack: Stack) -> list[DeadLetter]:
    with Session(stack.engine) as session:
        return list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))


def _replay(stack: Stack, letter_id: int) -> None:
    replay = ["dlq", "replay", str(letter_id), "--reason", "the parser was fixed"]
    result = CliRunner().invoke(main, replay, env=stack.env, catch_exceptions=False)
    assert result.exit_code == 0 and "replayed 1" in result.output, result.output


def _replayed_into_one(stack: Stack, previous: int) -> DeadLetter:
    def one_new() -> bool:
        letters = _letters(stack)
        return len(letters) == 1 and letters[0].id != previous

    wait_for(one_new, 60, "the replay's one dead letter", interval=0.5)
    stack.settle(1.0)  # nothing more comes of it
    (letter,) = _letters(stack)
    return letter


def test_a_failing_replay_of_many_malformed_events_keeps_one_dead_letter(
    make_stack: StackFactory,
) -> None:
    stack = make_stack()
    stack.start_worker("classify", queues="mutt.classify,mutt.maintenance", concurrency=2)
    good = [wire_event("router-01", f"good {i}") for i in range(2)]
    # Malformed in different ways: each keeps its own reason.
    malformed = [{"correlation_id": f"bad-{i}", "message": i} for i in range(MALFORMED - 1)]
    malformed.append({"hostname": "no timestamps"})
    with Session(stack.engine) as session, session.begin():
        letter = add_dead_letter(
            session,
            task_name="mutt.classify_event",
            queue="mutt.classify",
            payload={"events": [*malformed[:10], *good, *malformed[10:]]},
            error="a bug, since fixed",
            backoff_base=3600,  # remediation leaves it be: a person replays it
        )
        session.flush()
        first = letter.id

    _replay(stack, first)
    again = _replayed_into_one(stack, first)
    assert again.payload["replay_of"] == first
    assert again.payload["events"] == malformed  # the good ones passed
    reasons = again.payload["reasons"]
    assert len(reasons) == MALFORMED and all("not a wire event" in r for r in reasons)
    assert "KeyError" in reasons[-1] and f"{MALFORMED} replayed events failed again" in (
        again.error_message
    )
    with Session(stack.engine) as session:
        assert session.scalar(select(func.count()).select_from(EventAuditLog)) == 2

    # Replayed again, it fails again: still one dead letter, not 5,000.
    _replay(stack, again.id)
    third = _replayed_into_one(stack, again.id)
    assert third.payload["replay_of"] == again.id
    assert len(third.payload["events"]) == MALFORMED
