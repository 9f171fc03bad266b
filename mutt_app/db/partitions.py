"""Monthly partitions of event_audit_log on PostgreSQL.

Rows whose month has no partition land in ``event_audit_log_default``. Creating the missing partition
later would fail (PostgreSQL refuses a partition whose range the default partition already holds rows
for), so the rows are moved: the new table is built standalone, the month's rows move into it from the
default partition, then it is attached, all in one transaction.

No stored timestamp can make the partition or retention job fail. Only months from FIRST_MONTH
to LAST_MONTH get partitions (their bounds and names are ordinary dates; PostgreSQL stores times up
to the year 294276 and before Christ, which Python cannot read), and only those months' rows are
ever read into Python. Rows stamped before FIRST_MONTH or after LAST_MONTH stay in the default
partition, counted in ``mutt_audit_default_rows_outside_window`` and named in a warning. Ingest
no longer stores such times (:mod:`mutt_app.events.event_time`): they are rows stored before it,
or by hand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, Engine, text

from mutt_app import metrics

log = logging.getLogger(__name__)

PARENT = "event_audit_log"
DEFAULT_PARTITION = f"{PARENT}_default"

FIRST_MONTH = date(1970, 1, 1)
"""The earliest month given a partition: rows before the Unix epoch are clocks gone wrong."""
LAST_MONTH = date(9999, 11, 1)
"""The last month given a partition: 9999-12 has no end Python can write (year 10000)."""


@dataclass(frozen=True, slots=True)
class PartitionResult:
    """What one month's call did: its partition's name, whether it was new, rows moved into it."""

    name: str
    created: bool
    moved_rows: int


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(day: date, months: int) -> date:
    """The first day of the month ``months`` after ``day``'s month."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def partition_name(month: date) -> str:
    """``event_audit_log_YYYYMM``, the spec's naming."""
    return f"{PARENT}_{month.year:04d}{month.month:02d}"


def partitionable(month: date) -> bool:
    """Whether ``month`` may have a partition (FIRST_MONTH through LAST_MONTH)."""
    return FIRST_MONTH <= month_start(month) <= LAST_MONTH


def _utc(day: date) -> str:
    # Explicit offset: partition bounds must not depend on the session's TimeZone.
    return f"{day.isoformat()} 00:00:00+00"


def existing_partitions(conn: Connection) -> list[str]:
    """Names of the tables attached to event_audit_log, sorted."""
    rows = conn.execute(
        text(
            "SELECT child.relname FROM pg_inherits "
            "JOIN pg_class parent ON pg_inherits.inhparent = parent.oid "
            "JOIN pg_class child ON pg_inherits.inhrelid = child.oid "
            "WHERE parent.relname = :parent ORDER BY child.relname"
        ),
        {"parent": PARENT},
    )
    return [row[0] for row in rows]


def ensure_partition(conn: Connection, month: date) -> PartitionResult:
    """Create ``month``'s partition if missing, moving its rows out of the default partition.

    Idempotent; runs inside the caller's transaction.
    """
    start = month_start(month)
    if not partitionable(start):
        raise ValueError(f"no partition for {start:%Y-%m}: outside {FIRST_MONTH} .. {LAST_MONTH}")
    end = add_months(start, 1)
    name = partition_name(start)
    if name in existing_partitions(conn):
        return PartitionResult(name, created=False, moved_rows=0)

    # Serialise with concurrent creators and with inserts routing into the default partition.
    conn.execute(text(f"LOCK TABLE {PARENT} IN SHARE ROW EXCLUSIVE MODE"))
    if name in existing_partitions(conn):
        return PartitionResult(name, created=False, moved_rows=0)

    lo, hi = _utc(start), _utc(end)
    conn.execute(
        text(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    )
    moved = conn.execute(
        text(
            f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} "
            f"WHERE event_timestamp >= '{lo}' AND event_timestamp < '{hi}' RETURNING *) "
            f"INSERT INTO {name} SELECT * FROM moved"
        )
    ).rowcount
    # A CHECK matching the bounds lets ATTACH skip its validation scan of the new table.
    conn.execute(
        text(
            f"ALTER TABLE {name} ADD CONSTRAINT {name}_bounds CHECK ("
            f"event_timestamp >= '{lo}' AND event_timestamp < '{hi}')"
        )
    )
    conn.execute(
        text(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}')")
    )
    conn.execute(text(f"ALTER TABLE {name} DROP CONSTRAINT {name}_bounds"))
    log.info("created partition %s (moved %d rows from the default partition)", name, moved)
    return PartitionResult(name, created=True, moved_rows=max(moved, 0))


def months_in_default(conn: Connection, first: date, last: date) -> list[date]:
    """The months from ``first`` through ``last`` that have rows stranded in the default partition.

    Only months that may have a partition are read into Python (a stored time may be past what it
    can hold); the rows of the others are counted in ``mutt_audit_default_rows_outside_window`` and
    a warning gives their span.
    """
    _count_unpartitionable(conn)
    first = max(month_start(first), FIRST_MONTH)
    last = min(month_start(last), LAST_MONTH)
    if first > last:
        return []
    rows = conn.execute(
        text(
            "SELECT DISTINCT date_trunc('month', event_timestamp AT TIME ZONE 'UTC')::date "
            f"FROM {DEFAULT_PARTITION} WHERE event_timestamp >= CAST(:lo AS timestamptz) "
            "AND event_timestamp < CAST(:hi AS timestamptz) ORDER BY 1"
        ),
        {"lo": _utc(first), "hi": _utc(add_months(last, 1))},
    )
    return [row[0] for row in rows]


def _count_unpartitionable(conn: Connection) -> int:
    """Rows of the default partition before FIRST_MONTH or after LAST_MONTH: set and logged."""
    count, earliest, latest = conn.execute(
        text(
            f"SELECT count(*), min(event_timestamp)::text, max(event_timestamp)::text "
            f"FROM {DEFAULT_PARTITION} WHERE event_timestamp < CAST(:lo AS timestamptz) "
            "OR event_timestamp >= CAST(:hi AS timestamptz)"
        ),
        {"lo": _utc(FIRST_MONTH), "hi": _utc(add_months(LAST_MONTH, 1))},
    ).one()
    metrics.AUDIT_DEFAULT_ROWS_OUTSIDE_WINDOW.set(count)
    if count:
        log.warning(
            "%d audit rows in %s are stamped outside %s .. %s (from %s to %s): they stay there, "
            "no job moves or archives them (docs/runbook.md)",
            count,
            DEFAULT_PARTITION,
            f"{FIRST_MONTH:%Y-%m}",
            f"{LAST_MONTH:%Y-%m}",
            earliest,
            latest,
        )
    return int(count)


def ensure_partitions(
    engine: Engine, first_month: date, months_ahead: int, *, drain_default: bool = True
) -> list[PartitionResult]:
    """Ensure partitions from ``first_month`` through ``months_ahead`` months after it.

    With ``drain_default`` it also creates the partition of every month (FIRST_MONTH through
    LAST_MONTH) that has rows in the default partition, so those rows move out of it: as many as
    the months the audit holds, and ingest puts every event within EVENT_TIME_MAX_AGE_DAYS of its
    arrival. Months before FIRST_MONTH or after LAST_MONTH are left out. One transaction per month,
    so a long run commits progress as it goes. A no-op on databases without partitioning (SQLite), where it
    returns an empty list.
    """
    if engine.dialect.name != "postgresql":
        return []
    months = [month_start(first_month)]
    while len(months) <= months_ahead and months[-1] < LAST_MONTH:
        months.append(add_months(months[-1], 1))
    months = [m for m in months if partitionable(m)]
    if drain_default:
        with engine.connect() as conn:
            stranded = months_in_default(conn, FIRST_MONTH, LAST_MONTH)
        months += [m for m in stranded if m not in months]
    results = []
    for month in sorted(months):
        with engine.begin() as conn:
            results.append(ensure_partition(conn, month))
    return results
