"""The rule backtest on a large event audit: rows/s, wall time and peak RSS on PostgreSQL.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/mutt_bench_backtest \\
        .venv/bin/python bench/backtest_bench.py --rows 1000000 --extra-rules 1000

Fills event_audit_log with ``--rows`` rows in one ``INSERT ... SELECT generate_series`` (the bench
messages of pipeline_bench.py, spread over the last 23 hours, each recorded with the decision the
live rules give it), then backtests a draft that changes about a third of the decisions, first
capped at a tenth of the rows, then over all of them, in this one process. The same peak RSS after
both runs shows that memory does not grow with the rows examined. The database must be migrated
(``mutt db upgrade``); the script seeds the rules and adds ``--extra-rules`` never-matching ones
so that the rule set is not trivially small. ``--keep`` reuses rows a previous run inserted.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
from datetime import UTC, datetime

from pipeline_bench import MESSAGES, SEVERITIES
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from mutt_app.commands.changes import audited_change
from mutt_app.commands.seed import seed_rules
from mutt_app.config import load_settings
from mutt_app.db.engine import make_engine, session_factory
from mutt_app.db.models import AlertRule, EventAuditLog
from mutt_app.rules.backtest import run_backtest
from mutt_app.rules.decide import decide
from mutt_app.rules.drafts import Draft
from mutt_app.rules.snapshot import load_snapshot

BGP_RULE = {
    "match_string": "BGP neighbor .* Down",
    "match_type": "regex",
    "priority": 600,
    "prod_handling": "Ticket_only",
    "dev_handling": "Log_only",
    "team_assignment": "ROUTING",
}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rules(session: Session, extra: int) -> None:
    with audited_change(session, None, changed_by="bench", reason="backtest bench") as change:
        seed_rules(change)
    have = session.scalar(
        select(func.count()).select_from(AlertRule).where(AlertRule.team_assignment == "BENCH")
    )
    for i in range(have or 0, extra):
        regex = i % 4 == 0
        session.add(
            AlertRule(
                match_string=f"bench{i}.*failed" if regex else f"%BENCH-{i}-NEVER",
                match_type="regex" if regex else "contains",
                priority=100 + i % 500,
                prod_handling="Ticket_only",
                dev_handling="Log_only",
                team_assignment="BENCH",
            )
        )
    session.commit()


def _fill(session: Session, rows: int, team: str) -> float:
    """Insert ``rows`` audit rows, each with the live rules' decision; returns seconds taken."""
    snapshot = load_snapshot(session, "bench")
    templates = []
    for k in range(len(MESSAGES) * len(SEVERITIES)):
        message, severity = MESSAGES[k % len(MESSAGES)], SEVERITIES[k // len(MESSAGES)]
        decision = decide(message.format(n=0), None, severity, "bench-0", snapshot, team)
        templates.append((k, message, severity, decision.rule_id, decision.handling))
    values = ", ".join(
        f"({k}, '{m}', {s}, {'NULL' if r is None else r}, '{h}')" for k, m, s, r, h in templates
    )
    started = time.perf_counter()
    session.execute(
        text(
            f"""
            INSERT INTO event_audit_log (event_timestamp, received_at, hostname, message, source,
                syslog_severity, trap_oid, matched_rule_id, handling_decision, team_assignment,
                is_dev, forwarded_to_moog, correlation_id, raw)
            SELECT ts, ts, 'bench-' || (g % 500), msg, 'syslog', t.severity, NULL, t.rule_id,
                t.handling, 'NETO', false, t.handling IN ('Page_and_ticket', 'Ticket_only'),
                md5(g::text || clock_timestamp()::text)::uuid,
                jsonb_build_object('hostname', 'bench-' || (g % 500), 'message', msg,
                                   'syslog_severity', t.severity, 'program', 'bench')
            FROM generate_series(1, :rows) AS g
            JOIN (VALUES {values}) AS t (k, template, severity, rule_id, handling)
                ON t.k = g % {len(templates)}
            CROSS JOIN LATERAL (
                SELECT replace(t.template, '{{n}}', (g % 48)::text) AS msg,
                       now() - (g % 82800) * interval '1 second' AS ts
            ) AS e
            """
        ),
        {"rows": rows},
    )
    session.commit()
    session.execute(text("ANALYZE event_audit_log"))
    session.commit()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Fill the audit, backtest it capped and whole, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--extra-rules", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--keep", action="store_true", help="reuse the rows already there")
    args = parser.parse_args(argv)

    settings = load_settings()
    engine = make_engine(settings)
    sessions = session_factory(engine)
    team = settings.unhandled_default_team
    with sessions() as session:
        _rules(session, args.extra_rules)
        if not args.keep:
            session.execute(text("TRUNCATE event_audit_log"))
            session.commit()
            print(f"inserted {args.rows:,} rows in {_fill(session, args.rows, team):.1f} s")
        total = session.scalar(select(func.count()).select_from(EventAuditLog))
        rules = session.scalar(select(func.count()).select_from(AlertRule))
        interface = session.scalar(
            select(AlertRule.id).where(AlertRule.match_string == "Interface.*down")
        )
    draft = Draft(create=(BGP_RULE,), update={interface: {"prod_handling": "Ticket_only"}})
    print(f"{platform.node()}: {total:,} audit rows, {rules:,} rules; peak RSS before: "
          f"{_peak_rss_mib():.0f} MiB")  # fmt: skip
    for cap in (max(1, total // 10), total):
        with sessions() as session:
            started = time.perf_counter()
            result = run_backtest(
                session,
                draft,
                args.hours,
                default_team=team,
                max_rows=cap,
                budget_seconds=3600,
                now=datetime.now(UTC),
            )
            wall = time.perf_counter() - started
        print(
            f"cap {cap:>9,}: {result.examined:,} rows examined, {result.changed:,} changed in"
            f" {len(result.groups)} groups, truncated={result.truncated}; {wall:.1f} s wall,"
            f" {result.examined / wall:,.0f} rows/s, peak RSS {_peak_rss_mib():.0f} MiB"
        )
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
