"""Retention: archive what is past its age, check the archive against the table, then remove it.

What goes, and when:

- **Event audit, PostgreSQL**: a monthly partition whose whole range is older than
  EVENT_RETENTION_DAYS. A partition is kept until its *last* day is past the limit, so the audit
  holds between EVENT_RETENTION_DAYS and about a month more.
- **Event audit, SQLite** (embedded default, no partitions): rows whose event_timestamp is older
  than EVENT_RETENTION_DAYS, archived and deleted in batches like the dead letters below.
- **Dead letters** (last failed before DLQ_RETENTION_DAYS) and **poison** (poisoned before
  POISON_RETENTION_DAYS): archived and deleted in batches.
- **Config audit**: never. Nothing here touches config_audit_log.

The order that makes a run killed at any moment lose nothing (see :mod:`mutt_app.db.archive` for how one
archive is written):

1. a partition is detached and renamed ``retiring_event_audit_log_YYYYMM`` in one transaction, so no
   writer can reach it any more (late rows for that month go to the default partition) and its
   contents cannot change while they are archived;
2. the retiring table is hashed (row count and SHA-256 of its rows as JSON lines), written to an
   archive whose name carries that hash, the archive is read back and checked against the manifest
   and the table's hash, and only then is the table dropped. A re-run finds retiring tables first:
   the same rows give the same archive name, so an archive completed before the kill is verified and
   reused, an incomplete one rewritten;
3. rows (dead letters, poison, SQLite events) go in batches, each in one transaction that locks the
   batch, archives and verifies it, and deletes exactly those rows; killed before the commit, the
   rows stay and the next run finds the same batch and its archive.

Rows that arrive later for a month already archived land in the default partition. A run first moves
rows older than the limit out of the default partition into their month's partition (as
create_partitions does), so they are archived too, in a second archive for that month: the archive
names differ by content hash, and the earlier archive is never overwritten.

One run at a time: a PostgreSQL advisory lock (or a lock file beside the archives on SQLite) is held
for the run and released by the database or the kernel if the process dies.
"""

from __future__ import annotations

import fcntl
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, Engine, Table, delete, func, select, text, update

from mutt_app import metrics
from mutt_app.config import Settings
from mutt_app.db.archive import (
    ArchiveError,
    check_writable,
    digest,
    ensure_archive,
    remove_stale_temps,
    row_line,
)
from mutt_app.db.models import DeadLetter, EventAuditLog, PoisonLetter
from mutt_app.db.partitions import (
    DEFAULT_PARTITION,
    FIRST_MONTH,
    LAST_MONTH,
    PARENT,
    add_months,
    ensure_partition,
    existing_partitions,
    months_in_default,
)

log = logging.getLogger(__name__)

RETIRING_PREFIX = "retiring_"
_MONTHLY = re.compile(rf"^(?:{RETIRING_PREFIX})?{PARENT}_(\d{{4}})(\d{{2}})$")
# Rows per archive and transaction for row-wise retention: small enough that a batch's row locks and
# memory stay modest, large enough that a big backlog does not make thousands of files.
BATCH_ROWS = 5_000
PROGRESS_EVERY = 100_000
DETACH_LOCK_TIMEOUT = "10s"
ADVISORY_LOCK_KEY = 0x6D757474_0002  # "mutt" + 2: one retention run per database
ARCHIVE_SUBDIRS = (PARENT, DeadLetter.__tablename__, PoisonLetter.__tablename__)

Progress = Callable[[str], None]


class RetentionBusy(RuntimeError):
    """Another retention run holds the lock."""


@dataclass(frozen=True, slots=True)
class RowTarget:
    """A table that retention trims row by row: what it is called, its age column, its limit."""

    table: Table
    age_column: str
    days: int

    @property
    def name(self) -> str:
        return self.table.name

    def cutoff(self, now: datetime) -> datetime:
        return now - timedelta(days=self.days)


@dataclass(frozen=True, slots=True)
class PartitionItem:
    """One monthly partition that is past retention (attached, or retiring after a killed run)."""

    table: str
    month: date
    rows: int
    retiring: bool


@dataclass(slots=True)
class Plan:
    """What a run would remove (``mutt retention run --dry-run`` prints it)."""

    database: str
    event_cutoff: datetime
    partitions: list[PartitionItem] = field(default_factory=list)
    default_partition_rows: int = 0
    """Rows past retention in the default partition (moved into their months, then archived)."""
    rows: dict[str, int] = field(default_factory=dict)
    """Table -> rows past retention, for the row-wise targets."""
    cutoffs: dict[str, datetime] = field(default_factory=dict)


@dataclass(slots=True)
class Report:
    """What a run did."""

    partitions_dropped: list[str] = field(default_factory=list)
    rows_archived: dict[str, int] = field(default_factory=dict)
    rows_deleted: dict[str, int] = field(default_factory=dict)
    archives: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def row_targets(settings: Settings, *, partitioned: bool) -> list[RowTarget]:
    """The row-wise targets: dead letters, poison, and (without partitions) the event audit."""
    targets = [
        RowTarget(DeadLetter.__table__, "last_failed_at", settings.dlq_retention_days),
        RowTarget(PoisonLetter.__table__, "poisoned_at", settings.poison_retention_days),
    ]
    if not partitioned:
        targets.insert(
            0, RowTarget(EventAuditLog.__table__, "event_timestamp", settings.event_retention_days)
        )
    return targets


def _partitioned(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def _month_of(table: str) -> date | None:
    match = _MONTHLY.match(table)
    try:
        return date(int(match[1]), int(match[2]), 1) if match else None
    except ValueError:  # month 00 or 13: a table made by hand, not one of ours
        return None


def _month_end(month: date) -> datetime:
    if month > LAST_MONTH:  # 9999-12 ends in the year 10000: never past retention
        return datetime.max.replace(tzinfo=UTC)
    return datetime.combine(add_months(month, 1), datetime.min.time(), tzinfo=UTC)


def _retiring_tables(conn: Connection) -> list[str]:
    rows = conn.execute(
        text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename LIKE :prefix ORDER BY tablename"
        ),
        {"prefix": f"{RETIRING_PREFIX}{PARENT}_%"},
    )
    return [row[0] for row in rows if _month_of(row[0])]


def _expired_partitions(conn: Connection, cutoff: datetime) -> list[tuple[str, date]]:
    found = []
    for name in existing_partitions(conn):
        month = _month_of(name)
        if month is not None and _month_end(month) <= cutoff:
            found.append((name, month))
    return found


def _count(conn: Connection, table: str) -> int:
    return conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()


def plan(engine: Engine, settings: Settings, now: datetime | None = None) -> Plan:
    """What a run at ``now`` would archive and remove; reads only."""
    now = now or datetime.now(UTC)
    event_cutoff = now - timedelta(days=settings.event_retention_days)
    result = Plan(engine.dialect.name, event_cutoff)
    partitioned = _partitioned(engine)
    with engine.connect() as conn:
        if partitioned:
            for name in _retiring_tables(conn):
                result.partitions.append(
                    PartitionItem(name, _month_of(name), _count(conn, name), retiring=True)  # type: ignore[arg-type]
                )
            for name, month in _expired_partitions(conn, event_cutoff):
                result.partitions.append(
                    PartitionItem(name, month, _count(conn, name), retiring=False)
                )
            result.default_partition_rows = conn.execute(
                text(f"SELECT count(*) FROM {DEFAULT_PARTITION} WHERE event_timestamp < :cutoff"),
                {"cutoff": _default_cutoff(event_cutoff)},
            ).scalar_one()
        for target in row_targets(settings, partitioned=partitioned):
            cutoff = target.cutoff(now)
            result.cutoffs[target.name] = cutoff
            result.rows[target.name] = conn.execute(
                select(func.count())
                .select_from(target.table)
                .where(target.table.c[target.age_column] < cutoff)
            ).scalar_one()
    return result


def _default_cutoff(event_cutoff: datetime) -> datetime:
    # Whole months only: rows of a month that is not yet wholly past retention stay in default.
    month = event_cutoff.date().replace(day=1)
    return datetime.combine(month, datetime.min.time(), tzinfo=UTC)


def run(
    engine: Engine,
    settings: Settings,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> Report:
    """Archive and remove everything past retention (see the module docstring).

    Raises :class:`RetentionBusy` when another run holds the lock. A failed step is recorded in the
    report (and counted in ``mutt_retention_failures_total``) and keeps its data; a failed detach
    lets the next partition go, a failed archive stops the partitions (and the batches of that
    table) until the next run.
    """
    now = now or datetime.now(UTC)
    say = progress or log.info
    report = Report()
    root = settings.archive_path
    with _run_lock(engine, root):
        for sub in ARCHIVE_SUBDIRS:
            if remove_stale_temps(root / sub):
                say(f"removed temporary files a killed run left in {root / sub}")
        try:
            for sub in ARCHIVE_SUBDIRS:
                check_writable(root / sub)
        except OSError as exc:
            # Before anything is detached: nothing leaves the database without a place to go.
            _failed(report, "archive", str(root), exc)
            return report
        event_cutoff = now - timedelta(days=settings.event_retention_days)
        partitioned = _partitioned(engine)
        if partitioned:
            _retire_partitions(engine, root, event_cutoff, report, say)
        for target in row_targets(settings, partitioned=partitioned):
            _trim_rows(engine, root, target, target.cutoff(now), report, say)
    if not report.failures:
        metrics.RETENTION_LAST_SUCCESS.set(time.time())
    return report


@contextmanager
def _run_lock(engine: Engine, root: Path) -> Iterator[None]:
    if _partitioned(engine):
        with engine.connect() as conn:
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            ).scalar_one()
            conn.commit()
            if not got:
                raise RetentionBusy("another retention run is in progress")
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
                conn.commit()
        return
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".retention.lock", "a+b") as lock_file:
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RetentionBusy("another retention run is in progress") from None
        yield


# --- partitions (PostgreSQL) ---------------------------------------------------------------------


def _retire_partitions(
    engine: Engine, root: Path, cutoff: datetime, report: Report, say: Progress
) -> None:
    directory = root / PARENT
    # Late rows for months past retention: give them their partition so they are archived below.
    with engine.connect() as conn:
        # From 1970 on only: older rows stay in the default partition (counted, logged; runbook).
        months = months_in_default(conn, FIRST_MONTH, cutoff.date())
        stranded = [m for m in months if _month_end(m) <= cutoff]
    for month in stranded:
        with engine.begin() as conn:
            moved = ensure_partition(conn, month)
        say(f"{moved.name}: {moved.moved_rows} rows moved out of the default partition")

    with engine.connect() as conn:
        retiring = _retiring_tables(conn)
        expired = _expired_partitions(conn, cutoff)
    # One partition at a time, leftovers of a killed run first: a detached partition is out of the
    # audit's sight until it is archived, so never more than one is, and none after a failed archive
    # (a full or unwritable ARCHIVE_DIR would fail them all).
    for table in retiring:
        try:
            _archive_and_drop(engine, directory, table, report, say)
        except Exception as exc:
            _failed(report, "archive", table, exc)
            return
    for name, month in expired:
        try:
            table = _detach(engine, name, month)
        except Exception as exc:  # e.g. lock_timeout: the next partition may still go
            _failed(report, "detach", name, exc)
            continue
        say(f"{name}: detached (past {cutoff:%Y-%m-%d})")
        try:
            _archive_and_drop(engine, directory, table, report, say)
        except Exception as exc:
            _failed(report, "archive", table, exc)
            return


def _detach(engine: Engine, name: str, month: date) -> str:
    """Detach ``name`` and rename it retiring_..., in one transaction; returns the new name."""
    retiring = f"{RETIRING_PREFIX}{name}"
    with engine.begin() as conn:
        # DETACH takes an ACCESS EXCLUSIVE lock on the parent: give up rather than queue every
        # insert behind a long-running reader.
        conn.execute(text(f"SET LOCAL lock_timeout = '{DETACH_LOCK_TIMEOUT}'"))
        conn.execute(text(f"ALTER TABLE {PARENT} DETACH PARTITION {name}"))
        conn.execute(text(f"ALTER TABLE {name} RENAME TO {retiring}"))
    return retiring


def _table_lines(conn: Connection, table: str, say: Progress) -> Iterator[bytes]:
    query = text(f'SELECT * FROM "{table}" ORDER BY id, event_timestamp')
    # A server-side cursor: a month of audit rows is streamed, never held in memory at once.
    result = conn.execute(query.execution_options(stream_results=True, yield_per=10_000))
    for n, row in enumerate(result.mappings(), start=1):
        if n % PROGRESS_EVERY == 0:
            say(f"{table}: {n} rows read")
        yield row_line(dict(row))


def _archive_and_drop(
    engine: Engine, directory: Path, table: str, report: Report, say: Progress
) -> None:
    month = _month_of(table)
    assert month is not None
    with engine.begin() as conn:
        # Nothing writes to a detached table; the lock makes sure of it until the DROP commits.
        conn.execute(text(f'LOCK TABLE "{table}" IN SHARE MODE'))
        expected = digest(_table_lines(conn, table, say))
        if expected.rows:
            manifest = ensure_archive(
                directory,
                lambda d: f"{PARENT}_{month:%Y%m}-{d.sha256[:16]}",
                expected,
                lambda: _table_lines(conn, table, say),
                table=PARENT,
                source=table.removeprefix(RETIRING_PREFIX),
                details={
                    "month": f"{month:%Y-%m}",
                    "range_start": f"{month.isoformat()}T00:00:00+00:00",
                    "range_end": _month_end(month).isoformat(),
                },
            )
            report.archives.append(manifest.file)
            say(
                f"{table}: {expected.rows} rows in {manifest.file} "
                f"(sha256 {manifest.sha256[:16]}, verified)"
            )
        conn.execute(text(f'DROP TABLE "{table}"'))
    name = table.removeprefix(RETIRING_PREFIX)
    report.partitions_dropped.append(name)
    report.rows_archived[PARENT] = report.rows_archived.get(PARENT, 0) + expected.rows
    metrics.RETENTION_ROWS_ARCHIVED.labels(PARENT).inc(expected.rows)
    metrics.RETENTION_PARTITIONS_DROPPED.inc()
    log.info("retention: partition %s dropped after archiving %d rows", name, expected.rows)
    say(f"{name}: dropped")


# --- rows (dead letters, poison, SQLite events) -------------------------------------------------


def _trim_rows(
    engine: Engine,
    root: Path,
    target: RowTarget,
    cutoff: datetime,
    report: Report,
    say: Progress,
) -> None:
    directory = root / target.name
    total = 0
    while True:
        try:
            done = _trim_batch(engine, directory, target, cutoff, report)
        except Exception as exc:  # recorded; the rows stay for the next run
            _failed(report, "archive", target.name, exc)
            return
        if not done:
            break
        total += done
        if total % PROGRESS_EVERY < BATCH_ROWS:
            say(f"{target.name}: {total} rows archived and deleted so far")
    if total:
        say(f"{target.name}: {total} rows older than {cutoff:%Y-%m-%d} archived and deleted")


def _trim_batch(
    engine: Engine, directory: Path, target: RowTarget, cutoff: datetime, report: Report
) -> int:
    table, key = target.table, target.table.c.id
    old = table.c[target.age_column] < cutoff
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            # A write statement takes SQLite's write lock even when it matches nothing: from here
            # to the commit no other process can change these rows.
            conn.execute(update(table).where(key < 0).values(id=key))
        query = select(key).where(old).order_by(key).limit(BATCH_ROWS)
        if engine.dialect.name == "postgresql":
            query = query.with_for_update()
        ids = list(conn.scalars(query))
        if not ids:
            return 0
        rows = [
            row_line(dict(row))
            for row in conn.execute(select(table).where(key.in_(ids)).order_by(key)).mappings()
        ]
        expected = digest(rows)
        manifest = ensure_archive(
            directory,
            lambda d: f"{target.name}-{ids[0]:012d}-{ids[-1]:012d}-{d.sha256[:16]}",
            expected,
            lambda: rows,
            table=target.name,
            source=target.name,
            details={"older_than": cutoff.isoformat(), "first_id": ids[0], "last_id": ids[-1]},
        )
        deleted = conn.execute(delete(table).where(key.in_(ids))).rowcount
        if deleted != len(ids):
            raise ArchiveError(f"{target.name}: deleted {deleted} rows, archived {len(ids)}")
    report.archives.append(manifest.file)
    report.rows_archived[target.name] = report.rows_archived.get(target.name, 0) + len(ids)
    report.rows_deleted[target.name] = report.rows_deleted.get(target.name, 0) + len(ids)
    metrics.RETENTION_ROWS_ARCHIVED.labels(target.name).inc(len(ids))
    log.info(
        "retention: %d %s rows archived in %s and deleted", len(ids), target.name, manifest.file
    )
    return len(ids)


def _failed(report: Report, step: str, item: str, exc: BaseException) -> None:
    report.failures.append(f"{item}: {exc}")
    metrics.RETENTION_FAILURES.labels(step).inc()
    log.error("retention: %s of %s failed, its data is kept: %s", step, item, exc)
