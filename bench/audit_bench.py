"""The audit insert's own costs, apart from the rest of classify: CPU per event, and the partial index.

    DATABASE_URL=postgresql://... .venv/bin/python bench/audit_bench.py client
    DATABASE_URL=postgresql://... PYTHONPATH=/tmp/before .venv/bin/python bench/audit_bench.py client
    DATABASE_URL=postgresql://... .venv/bin/python bench/audit_bench.py index

``client``: the audit rows of 20,000 events (a third unmatched) built with ``audit_values`` and
inserted by ``insert_audit_values`` in committed batches of 100, as classify does (``audit_row`` and
``insert_audit_rows`` in a tree from before those); client CPU and the
PostgreSQL backend's CPU per event, min and median of 5 repeats, for the tree on ``PYTHONPATH`` (run
it for two trees, alternating, to compare). ``index``: wall time to insert 50,000 audit rows (a third
unmatched) in committed batches of 500, with ``idx_event_audit_unmatched`` and without it,
alternating 4 times; the database must be at migration 0010 or later. Both empty event_audit_log
(the index is left in place).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

import mutt_app
from mutt_app.classify import audit as event_audit
from mutt_app.config import load_settings
from mutt_app.db.engine import make_engine
from mutt_app.events.schema import Event
from mutt_app.rules.decide import Decision

UNMATCHED = Decision(None, "Log_only", "NETO", False, False)
MATCHED = Decision(1, "Log_only", "NETO", False, True)


def _events(n: int, unmatched_every: int) -> list[tuple[Event, Decision]]:
    now = datetime.now(UTC)
    return [
        (
            Event(
                timestamp=now,
                received_at=now,
                hostname=f"h{i % 50}",
                message=f"widget 10.9.{i % 256}.7 lost sync after {i}ms",
                source="bench",
                syslog_severity=None,
                trap_oid=None,
                correlation_id=str(uuid.uuid4()),
                raw={"program": "bench"},
            ),
            UNMATCHED if i % unmatched_every == 0 else MATCHED,
        )
        for i in range(n)
    ]


# Classify's own path where the tree has it; older trees built a dict per row.
_ROW = getattr(event_audit, "audit_values", None) or event_audit.audit_row
_INSERT = getattr(event_audit, "insert_audit_values", None) or event_audit.insert_audit_rows


def _rows(pairs: list[tuple[Event, Decision]]) -> list[Any]:
    return [_ROW(e, d, None, rules_version=7) for e, d in pairs]


def _insert(session: Session, rows: list[Any], size: int) -> None:
    for start in range(0, len(rows), size):
        _INSERT(session, rows[start : start + size])
        session.commit()


def _backend_cpu(session: Session) -> float:
    """CPU seconds the session's PostgreSQL backend has used (it runs on this machine)."""
    pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client(url: str) -> None:
    """Print the min and median client and server CPU per event of inserting audit rows."""
    engine = make_engine(load_settings({"DATABASE_URL": url}))
    clients, servers = [], []
    with Session(engine) as session:
        for _ in range(5):
            session.execute(text("TRUNCATE event_audit_log"))
            session.commit()
            pairs = _events(20_000, 3)
            rows = _rows(pairs)
            server, started = _backend_cpu(session), time.process_time()
            _insert(session, rows, 100)
            clients.append((time.process_time() - started) / len(pairs) * 1e6)
            servers.append((_backend_cpu(session) - server) / len(pairs) * 1e6)
        session.execute(text("TRUNCATE event_audit_log"))
        session.commit()
    print(
        f"{Path(mutt_app.__file__).parent.parent}: client min {min(clients):.1f} us,"
        f" median {statistics.median(clients):.1f} us; PostgreSQL min {min(servers):.1f} us,"
        f" median {statistics.median(servers):.1f} us per event"
    )


def index(url: str) -> None:
    """Print the insert time per 1,000 rows with and without the unmatched-events index."""
    engine = make_engine(load_settings({"DATABASE_URL": url}))

    def run(session: Session, with_index: bool) -> float:
        session.execute(text("TRUNCATE event_audit_log"))
        if with_index:
            session.execute(
                text(
                    "CREATE INDEX IF NOT EXISTS idx_event_audit_unmatched ON event_audit_log"
                    " (event_timestamp DESC) WHERE matched_rule_id IS NULL"
                )
            )
        else:
            session.execute(text("DROP INDEX IF EXISTS idx_event_audit_unmatched"))
        session.commit()
        rows = _rows(_events(50_000, 3))
        started = time.perf_counter()
        _insert(session, rows, 500)
        return (time.perf_counter() - started) / len(rows) * 1e6

    results: dict[bool, list[float]] = {True: [], False: []}
    with Session(engine) as session:
        try:
            for _ in range(4):
                for with_index in (True, False):
                    results[with_index].append(run(session, with_index))
        finally:
            run(session, True)
            session.execute(text("TRUNCATE event_audit_log"))
            session.commit()
    for with_index, times in results.items():
        print(
            f"partial index {'on ' if with_index else 'off'}: "
            + ", ".join(f"{t:.0f}" for t in times)
            + f" ms per 1,000 rows; median {statistics.median(times):.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the ``client`` or the ``index`` measurement against DATABASE_URL."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("client", "index"))
    args = parser.parse_args(argv)
    url = os.environ["DATABASE_URL"]
    (client if args.what == "client" else index)(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
