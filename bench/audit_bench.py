"""The audit row's own costs, apart from the rest of classify: client CPU per event, and the partial index.

    DATABASE_URL=postgresql://... .venv/bin/python bench/audit_bench.py client
    DATABASE_URL=postgresql://... PYTHONPATH=/tmp/before .venv/bin/python bench/audit_bench.py client
    DATABASE_URL=postgresql://... .venv/bin/python bench/audit_bench.py index

``client``: CPU per event of building the audit rows of 20,000 events (a third unmatched) with
``audit_row`` and rendering their VALUES as psycopg2's execute_values does (``mogrify``), without
sending them; min and median of 7 repeats, for the tree on ``PYTHONPATH`` (run it for two trees to
compare). ``index``: wall time to insert 50,000 audit rows (a third unmatched) in committed batches of
500, with ``idx_event_audit_unmatched`` and without it, alternating 4 times; the database must be at
migration 0010 or later, and its event_audit_log is emptied (the index is left in place).
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

import psycopg2
from psycopg2.extras import execute_values

import mutt_app
from mutt_app.classify import audit as event_audit
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


def _values(pairs: list[tuple[Event, Decision]]) -> list[tuple[Any, ...]]:
    # audit_row takes rules_version since migration 0010; an older tree's does not.
    extra = {"rules_version": 7} if "rules_version" in event_audit._PG_COLUMNS else {}
    rows = [event_audit.audit_row(e, d, None, **extra) for e, d in pairs]
    return [
        tuple(
            event_audit._raw_json(row[name]) if name == "raw" else row.get(name)
            for name in event_audit._PG_COLUMNS
        )
        for row in rows
    ]


def client(url: str) -> None:
    """Print the min and median CPU per event of audit_row plus the VALUES rendering."""
    pairs = _events(20_000, 3)
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        costs = []
        for _ in range(7):
            started = time.process_time()
            b"".join(cursor.mogrify(event_audit._PG_TEMPLATE, v) for v in _values(pairs))
            costs.append((time.process_time() - started) / len(pairs) * 1e6)
    print(
        f"{Path(mutt_app.__file__).parent.parent}: min {min(costs):.2f} us,"
        f" median {statistics.median(costs):.2f} us per event"
    )


def index(url: str) -> None:
    """Print the insert time per 1,000 rows with and without the unmatched-events index."""
    conn = psycopg2.connect(url)
    cursor = conn.cursor()

    def run(with_index: bool) -> float:
        cursor.execute("TRUNCATE event_audit_log")
        if with_index:
            cursor.execute(
                "CREATE INDEX IF NOT EXISTS idx_event_audit_unmatched ON event_audit_log"
                " (event_timestamp DESC) WHERE matched_rule_id IS NULL"
            )
        else:
            cursor.execute("DROP INDEX IF EXISTS idx_event_audit_unmatched")
        conn.commit()
        values = _values(_events(50_000, 3))
        started = time.perf_counter()
        for start in range(0, len(values), 500):
            execute_values(
                cursor,
                event_audit._PG_INSERT,
                values[start : start + 500],
                template=event_audit._PG_TEMPLATE,
                page_size=500,
                fetch=True,
            )
            conn.commit()
        return (time.perf_counter() - started) / len(values) * 1e6

    results: dict[bool, list[float]] = {True: [], False: []}
    try:
        for _ in range(4):
            for with_index in (True, False):
                results[with_index].append(run(with_index))
    finally:
        run(True)
        cursor.execute("TRUNCATE event_audit_log")
        conn.commit()
        conn.close()
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
