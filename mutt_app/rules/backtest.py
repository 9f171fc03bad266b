"""Rule backtest: how the audited events of the last hours would have been decided under a draft.

Each event_audit_log row keeps what classification read from the event (hostname, message,
syslog_severity, trap_oid, the OID found inside a message included), so the event is decided again
by the real engine (:func:`mutt_app.rules.decide.decide`) with the draft's rule set compiled as workers
compile theirs (:func:`mutt_app.rules.snapshot.load_snapshot`), and the development hosts and device
teams as they are now. The *old* decision is the one the audit recorded (``matched_rule_id``,
``handling_decision``). Only changed decisions are reported, counted by (old rule, new rule, old
handling, new handling) with a few sample correlation ids each. An event recorded under an older
rule set than the live one, or on a host made a development host since, can differ without the
draft changing anything that concerns it; the backtest reports that too, since it is what the
draft would do with such an event now.

Bounded in memory and time, however large the audit:

* memory: the rows are streamed through a server-side cursor (``yield_per``: BACKTEST_FETCH_ROWS
  at a time on PostgreSQL) and only the groups are kept (at most a few sample ids each), so memory
  does not grow with the rows examined;
* rows: at most BACKTEST_MAX_ROWS rows, newest first, are examined;
* time: at most BACKTEST_TIME_BUDGET_SECONDS; the budget is checked before every row and between
  the regex searches of one event (as classification's budget is), and on PostgreSQL the
  transaction's ``statement_timeout`` is what is left of it when the scan starts, so that no
  statement of a database slow to answer (a lock, a busy disk) runs longer than that either.

When either bound stops the scan the answer says ``truncated`` (``"rows"`` or ``"time"``) and
``oldest_examined``, the event time the examined rows reach back to: the answer is then exact for
the events from that time on. Rows are read newest first (``event_timestamp DESC, id DESC``, the
order of ``idx_event_audit_timestamp``), so a truncated answer covers the most recent events, and
the window's range scan on the partitioned table reads only the window's rows.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Result, Text, cast, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from mutt_app import metrics
from mutt_app.db.models import EventAuditLog
from mutt_app.rules.compile import BudgetExceeded
from mutt_app.rules.decide import decide
from mutt_app.rules.drafts import Draft, proposed_rules
from mutt_app.rules.snapshot import RuleSnapshot, load_snapshot

log = logging.getLogger(__name__)

MAX_HOURS = 720
"""The longest window a backtest may ask for (30 days)."""
SAMPLES_PER_GROUP = 5
"""Correlation ids kept per group of changed decisions."""
BACKTEST_FETCH_ROWS = 2000
"""Rows fetched per round trip from the server-side cursor."""

_COLUMNS = (
    # As text: parsing each into a uuid.UUID, only for a few samples, cost more than a fetch.
    cast(EventAuditLog.correlation_id, Text),
    EventAuditLog.event_timestamp,
    EventAuditLog.hostname,
    EventAuditLog.message,
    EventAuditLog.syslog_severity,
    EventAuditLog.trap_oid,
    EventAuditLog.matched_rule_id,
    EventAuditLog.handling_decision,
)

GroupKey = tuple[int | None, int | None, str, str]


@dataclass
class Group:
    """Events whose decision changed the same way."""

    count: int = 0
    samples: list[str] = field(default_factory=list)


@dataclass
class Backtest:
    """The answer: totals, whether a bound stopped the scan, and the changed decisions."""

    hours: int
    since: datetime
    examined: int = 0
    changed: int = 0
    truncated: str | None = None
    """None: every row of the window was examined; ``"rows"`` or ``"time"``: which bound stopped."""
    oldest_examined: datetime | None = None
    seconds: float = 0.0
    groups: dict[GroupKey, Group] = field(default_factory=dict)
    new_rules: Mapping[int, int] = field(default_factory=dict)
    skipped_rules: list[tuple[int, str]] = field(default_factory=list)

    def add(self, key: GroupKey, correlation_id: str) -> None:
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group()
        group.count += 1
        if len(group.samples) < SAMPLES_PER_GROUP:
            # SQLite keeps a UUID as 32 hex digits: the canonical form for every database.
            group.samples.append(str(uuid.UUID(correlation_id)))
        self.changed += 1

    def as_dict(self) -> dict[str, Any]:
        """The answer as the API gives it: groups largest first."""
        ordered = sorted(self.groups.items(), key=lambda item: (-item[1].count, repr(item[0])))
        return {
            "hours": self.hours,
            "since": self.since,
            "rows_examined": self.examined,
            "rows_changed": self.changed,
            "truncated": self.truncated is not None,
            "truncated_by": self.truncated,
            "oldest_examined": self.oldest_examined,
            "seconds": round(self.seconds, 3),
            "changes": [
                {
                    "old_rule_id": old_rule,
                    "new_rule_id": None if new_rule in self.new_rules else new_rule,
                    "new_rule_draft_index": self.new_rules.get(new_rule)
                    if new_rule is not None
                    else None,
                    "old_handling": old_handling,
                    "new_handling": new_handling,
                    "count": group.count,
                    "sample_correlation_ids": group.samples,
                }
                for (old_rule, new_rule, old_handling, new_handling), group in ordered
            ],
            "skipped_rules": [{"id": i, "error": e} for i, e in self.skipped_rules],
        }


QUERY_CANCELED = "57014"  # PostgreSQL's query_canceled, raised by statement_timeout


def _bound_statements(session: Session, deadline: float) -> None:
    """On PostgreSQL, end any statement of this transaction (the cursor's DECLARE, each FETCH)
    that would run past ``deadline``: the per-row check cannot stop a fetch the database is slow
    to answer."""
    if session.get_bind().dialect.name != "postgresql":
        return
    remaining_ms = max(1, int((deadline - time.perf_counter()) * 1000))
    session.execute(
        text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(remaining_ms)}
    )


def _scan(
    rows: Result[Any],
    result: Backtest,
    snapshot: RuleSnapshot,
    default_team: str,
    max_rows: int,
    deadline: float,
) -> None:
    """Decide each streamed row under ``snapshot`` into ``result`` until a bound stops it."""
    try:
        for row in rows:
            if result.examined >= max_rows:
                result.truncated = "rows"
                break
            if time.perf_counter() > deadline:
                result.truncated = "time"
                break
            (cid, moment, hostname, message, severity, trap_oid, old_rule, old_handling) = row
            try:
                new = decide(
                    message, trap_oid, severity, hostname, snapshot, default_team, deadline
                )
            except BudgetExceeded:
                result.truncated = "time"
                break
            result.examined += 1
            result.oldest_examined = moment
            if new.rule_id != old_rule or new.handling != old_handling:
                result.add((old_rule, new.rule_id, old_handling, new.handling), cid)
    finally:
        rows.close()  # ends the server-side cursor now, not when the session closes


def run_backtest(
    session: Session,
    draft: Draft,
    hours: int,
    *,
    default_team: str,
    max_rows: int,
    budget_seconds: float,
    now: datetime | None = None,
) -> Backtest:
    """Decide the audited events of the last ``hours`` again under ``draft``.

    Raises :class:`mutt_app.rules.drafts.DraftError` if the draft does not fit the live rules.
    """
    started = time.perf_counter()
    deadline = started + budget_seconds
    since = (now or datetime.now(UTC)) - timedelta(hours=hours)
    proposal = proposed_rules(session, draft)
    snapshot = load_snapshot(session, "draft", proposal.active())
    result = Backtest(
        hours=hours,
        since=since,
        new_rules=proposal.new_rules,
        skipped_rules=list(snapshot.ruleset.errors),
    )
    query = (
        select(*_COLUMNS)
        .where(EventAuditLog.event_timestamp >= since)
        .order_by(EventAuditLog.event_timestamp.desc(), EventAuditLog.id.desc())
        .execution_options(yield_per=BACKTEST_FETCH_ROWS)
    )
    try:
        _bound_statements(session, deadline)
        _scan(session.execute(query), result, snapshot, default_team, max_rows, deadline)
    except OperationalError as exc:
        if getattr(exc.orig, "pgcode", None) != QUERY_CANCELED:
            raise
        # statement_timeout: the database itself was slower than the budget (a lock, a busy
        # disk). The transaction is aborted; what was decided until then stands.
        result.truncated = "time"
    result.seconds = time.perf_counter() - started
    metrics.RULE_BACKTESTS.labels(result.truncated or "complete").inc()
    metrics.RULE_BACKTEST_ROWS.inc(result.examined)
    log.info(
        "backtest of %d hours: %d rows examined, %d changed, %s in %.1fs",
        hours,
        result.examined,
        result.changed,
        f"truncated by {result.truncated}" if result.truncated else "complete",
        result.seconds,
    )
    return result
