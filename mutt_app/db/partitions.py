"""Monthly partitions of event_audit_log on PostgreSQL.

Rows whose month has no partition land in ``event_audit_log_default``. Creating the missing partition
later would fail (PostgreSQL refuses a partition whose range the default partition already holds rows
for), so the rows are moved: the new table is built standalone, the month's rows move into it from the
default partition, then it is attached, all in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

PARENT = "event_audit_log"
DEFAULT_PARTITION = f"{PARENT}_default"


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
    return f"{PARENT}_{month:%Y%m}"


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


def months_in_default(conn: Connection) -> list[date]:
    """The months that have rows stranded in the default partition."""
    rows = conn.execute(
        text(
            "SELECT DISTINCT date_trunc('month', event_timestamp AT TIME ZONE 'UTC')::date "
            f"FROM {DEFAULT_PARTITION} ORDER BY 1"
        )
    )
    return [row[0] for row in rows]


def ensure_partitions(
    engine: Engine, first_month: date, months_ahead: int, *, drain_default: bool = True
) -> list[PartitionResult]:
    """Ensure partitions from ``first_month`` through ``months_ahead`` months after it.

    With ``drain_default`` it also creates the partition of every month that has rows in the default
    partition, so those rows move out of it. One transaction per month, so a long run commits progress
    as it goes. A no-op on databases without partitioning (SQLite), where it returns an empty list.
    """
    if engine.dialect.name != "postgresql":
        return []
    start = month_start(first_month)
    months = [add_months(start, offset) for offset in range(months_ahead + 1)]
    if drain_default:
        with engine.connect() as conn:
            months += [m for m in months_in_default(conn) if m not in months]
    results = []
    for month in sorted(months):
        with engine.begin() as conn:
            results.append(ensure_partition(conn, month))
    return results
