"""A chain of clearing rules on real processes: each link is a problem/clear pair that flaps.

C clears B and B clears A. An event of B, the middle rule, is the clear of A's pair and the problem
of B's pair; it used to count only as a problem, so a host bouncing between A and B never flapped
(pair A saw only problems) while its stream reached Moog event by event.
"""

from __future__ import annotations

from sqlalchemy import insert, select

from mutt_app.db.models import AlertRule
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import FORWARD_QUEUES
from tests.factories import posted_event
from tests.services import wait_for


def _rule(match: str, clears: int | None = None) -> dict:
    return dict(match_string=match, match_type="contains", prod_handling="Ticket_only",
                dev_handling="Log_only", team_assignment="NETO", clears_rule_id=clears)  # fmt: skip


def test_each_link_of_a_chain_flaps_on_its_own(make_stack: StackFactory) -> None:
    stack = make_stack(
        MOOG_RATE_LIMIT="50",
        DEDUP_WINDOW_SECONDS="0",
        FLAP_TRANSITIONS="3",
        FLAP_WINDOW_SECONDS="60",
        FLAP_QUIET_SECONDS="120",  # no episode ends within the test
    )
    with stack.engine.begin() as conn:
        conn.execute(insert(AlertRule), [_rule("power lost")])
        a = conn.execute(select(AlertRule.id)).scalar_one()
        conn.execute(insert(AlertRule), [_rule("on battery", clears=a)])
        b = conn.execute(select(AlertRule.id).where(AlertRule.clears_rule_id == a)).scalar_one()
        conn.execute(insert(AlertRule), [_rule("mains restored", clears=b)])
    with stack.together():
        stack.start_sink()
        stack.start_ingest()
        stack.start_worker("classify", queues="mutt.classify,mutt.maintenance", concurrency=2)
        stack.start_worker("forward", queues=FORWARD_QUEUES, concurrency=2, pool="threads")

    def bounce(host: str, first: str, second: str) -> list[dict]:
        return [posted_event(f"UPS {side}", host) for _ in range(4) for side in (first, second)]

    # ups-1 bounces between A and B (pair A), ups-2 between B and C (pair B).
    stack.post_events(bounce("ups-1", "power lost", "on battery"))
    stack.post_events(bounce("ups-2", "on battery", "mains restored"))
    stack.wait_audited(16, timeout=30)

    def raised() -> list[str]:
        return sorted(
            a["signature"]
            for a in stack.sink_events()
            if a.get("custom_info", {}).get("flapping") == "raised"
        )

    expected = sorted([f"ups-1::flapping::{a}", f"ups-2::flapping::{b}"])
    wait_for(lambda: raised() == expected, 30, "one flapping alert per link")
    stack.settle(2.0)
    assert raised() == expected  # one each, no more
    rows = stack.audit_rows()
    for host in ("ups-1", "ups-2"):
        held = sorted(r.held_reason or "" for r in rows if r.hostname == host)
        # Per host: three events forwarded (the third transition raises), five held as flapping.
        assert held == [""] * 3 + ["flapping"] * 5, (host, held)
