"""Retention on real PostgreSQL (and the SQLite embedded default): archive, verify, then remove.

The kill test runs ``mutt retention run`` as a real subprocess and SIGKILLs it at points seen from the
outside (a partition detached in the database, a temporary archive file on disk, a finished manifest),
then checks that every row is still in the database or in a verified archive, and that the next run
completes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY
from sqlalchemy import Engine, create_engine, func, insert, select, text

from mutt_app.celery_app import beat_schedule
from mutt_app.cli import main
from mutt_app.config import SettingsError, load_settings
from mutt_app.db import archive
from mutt_app.db.engine import make_engine
from mutt_app.db.models import ConfigAuditLog, DeadLetter, EventAuditLog, PoisonLetter
from mutt_app.db.partitions import (
    add_months,
    ensure_partitions,
    existing_partitions,
    partition_name,
)
from mutt_app.db.retention import RETIRING_PREFIX
from mutt_app.runtime import Runtime, runtime_of

RETENTION_DAYS = 45
# With 45 days, months -6..-4 are wholly past retention whatever today's date; -1 and 0 are not.
OLD_MONTHS = (-6, -5, -4)
KEPT_MONTHS = (-1, 0)


def _this_month() -> date:
    return datetime.now(UTC).date().replace(day=1)


def _month(offset: int) -> date:
    return add_months(_this_month(), offset)


def _env(pg_url: str, archive_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": pg_url,
        "ARCHIVE_DIR": str(archive_dir),
        "EVENT_RETENTION_DAYS": str(RETENTION_DAYS),
        "DLQ_RETENTION_DAYS": "30",
        "POISON_RETENTION_DAYS": "60",
        **extra,
    }


def _mutt(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def _fill_month(engine: Engine, month: date, rows: int) -> None:
    """``rows`` audit rows spread over ``month``, with nested JSON to make serialisation honest."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO event_audit_log (event_timestamp, received_at, hostname, message, "
                "source, syslog_severity, handling_decision, team_assignment, correlation_id, raw) "
                "SELECT CAST(:start AS timestamptz) + i * interval '1 minute', "
                "CAST(:start AS timestamptz) + i * interval '1 minute' + interval '1 second', "
                "'host-' || (i % 17), 'link down on port ' || i || ' \u00e9\"quoted\"', 'syslog', "
                "i % 8, 'Log_only', 'NETO', gen_random_uuid(), "
                "jsonb_build_object('z', i, 'a', jsonb_build_object('y', 1.5, 'b', 'x'))"
                " FROM generate_series(1, :rows) AS i"
            ),
            {"start": f"{month.isoformat()} 00:00:00+00", "rows": rows},
        )


def _partitioned_db(pg_url: str, rows: int) -> Engine:
    engine = create_engine(pg_url)
    ensure_partitions(engine, _month(-6), 7, drain_default=False)
    for offset in OLD_MONTHS + KEPT_MONTHS:
        _fill_month(engine, _month(offset), rows)
    with engine.begin() as conn:
        conn.execute(
            insert(ConfigAuditLog),
            [
                {
                    "changed_at": datetime.now(UTC) - timedelta(days=days),
                    "changed_by": "alice",
                    "operation": "UPDATE",
                    "table_name": "alert_rules",
                    "record_id": 1,
                    "reason": f"{days} days ago",
                }
                for days in (3000, 400, 1)
            ],
        )
    return engine


def _rows_of_months(engine: Engine, months: tuple[int, ...]) -> dict[int, dict]:
    """The rows of those months by id, as the JSON an archive holds (timestamps as ISO text)."""
    found = {}
    with engine.connect() as conn:
        for offset in months:
            lo, hi = _month(offset), _month(offset + 1)
            result = conn.execute(
                text(
                    "SELECT * FROM event_audit_log WHERE event_timestamp >= :lo "
                    "AND event_timestamp < :hi"
                ),
                {"lo": f"{lo} 00:00:00+00", "hi": f"{hi} 00:00:00+00"},
            )
            for row in result.mappings():
                found[row["id"]] = json.loads(archive.row_line(dict(row)))
    return found


def _manifests(directory: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.manifest.json"))]


def _archived_rows(directory: Path) -> list[dict]:
    """Every row of every complete archive, each archive checked independently of MUTT's code."""
    rows = []
    for manifest in _manifests(directory):
        path = directory / manifest["file"]
        raw = path.read_bytes()
        assert hashlib.sha256(raw).hexdigest() == manifest["gzip_sha256"]
        content = gzip.decompress(raw)
        assert hashlib.sha256(content).hexdigest() == manifest["sha256"]
        lines = content.splitlines()
        assert len(lines) == manifest["rows"]
        rows += [json.loads(line) for line in lines]
    return rows


def _tables(engine: Engine) -> tuple[list[str], list[str]]:
    with engine.connect() as conn:
        attached = existing_partitions(conn)
        retiring = list(
            conn.scalars(
                text("SELECT tablename FROM pg_tables WHERE tablename LIKE :p"),
                {"p": f"{RETIRING_PREFIX}%"},
            )
        )
    return attached, retiring


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_old_partitions_are_archived_verified_and_dropped(pg_url: str, tmp_path: Path) -> None:
    engine = _partitioned_db(pg_url, rows=300)
    old = _rows_of_months(engine, OLD_MONTHS)
    kept = _rows_of_months(engine, KEPT_MONTHS)
    assert len(old) == 900
    dropped_before = _metric("mutt_retention_partitions_dropped_total")
    archived_before = _metric("mutt_retention_rows_archived_total", table="event_audit_log")

    out = _mutt(_env(pg_url, tmp_path), "retention", "run")

    for offset in OLD_MONTHS:
        assert f"{partition_name(_month(offset))}: dropped" in out
    attached, retiring = _tables(engine)
    assert not retiring
    for offset in OLD_MONTHS:
        assert partition_name(_month(offset)) not in attached
    for offset in KEPT_MONTHS:
        assert partition_name(_month(offset)) in attached
    assert _rows_of_months(engine, KEPT_MONTHS) == kept

    directory = tmp_path / "event_audit_log"
    manifests = _manifests(directory)
    assert sorted(m["details"]["month"] for m in manifests) == [
        f"{_month(o):%Y-%m}" for o in OLD_MONTHS
    ]
    assert all(m["rows"] == 300 and m["table"] == "event_audit_log" for m in manifests)
    archived = _archived_rows(directory)
    assert {row["id"]: row for row in archived} == old
    assert len(archived) == len(old)
    # The archive API reads back the same rows.
    first = directory / manifests[0]["file"]
    assert len(list(archive.read_rows(first))) == 300

    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(ConfigAuditLog)) == 3
    # Empty partitions past retention (months -3, -2 on some dates) are dropped without an archive.
    dropped = out.count(": dropped")
    assert dropped >= 3
    assert _metric("mutt_retention_partitions_dropped_total") == dropped_before + dropped
    assert (
        _metric("mutt_retention_rows_archived_total", table="event_audit_log")
        == archived_before + 900
    )

    # Nothing left to do: a second run changes nothing and writes no archive.
    out = _mutt(_env(pg_url, tmp_path), "retention", "run")
    assert "dropped" not in out.replace("0 partitions dropped", "")
    assert len(_manifests(directory)) == 3
    engine.dispose()


def test_dry_run_shows_what_would_go_and_changes_nothing(pg_url: str, tmp_path: Path) -> None:
    engine = _partitioned_db(pg_url, rows=40)
    _dead_and_poison(engine)
    before = _tables(engine)

    out = _mutt(_env(pg_url, tmp_path), "retention", "run", "--dry-run")

    for offset in OLD_MONTHS:
        assert f"partition {partition_name(_month(offset))}: 40 rows" in out
    for offset in KEPT_MONTHS:
        assert partition_name(_month(offset)) not in out
    assert "dead_letters older than" in out and ": 2 rows" in out
    assert "poison_letters older than" in out and ": 1 rows" in out
    assert "config_audit_log: kept" in out
    assert _tables(engine) == before
    assert not tmp_path.joinpath("event_audit_log").exists()
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(DeadLetter)) == 3
        assert conn.scalar(select(func.count()).select_from(PoisonLetter)) == 2
    engine.dispose()


def _dead_and_poison(engine: Engine) -> None:
    now = datetime.now(UTC)
    common = {"queue": "mutt.forward", "error_type": "HTTPError", "error_message": "503"}
    with engine.begin() as conn:
        conn.execute(
            insert(DeadLetter),
            [
                {
                    **common,
                    "task_name": "mutt.forward_to_moog",
                    "payload": {"alert": {"n": days}},
                    "last_failed_at": now - timedelta(days=days),
                    "first_failed_at": now - timedelta(days=days),
                }
                for days in (45, 31, 2)
            ],
        )
        conn.execute(
            insert(PoisonLetter),
            [
                {
                    **common,
                    "task_name": "mutt.forward_to_moog",
                    "payload": {"alert": {"n": days}},
                    "poisoned_at": now - timedelta(days=days),
                    "reason": "still failing",
                }
                for days in (61, 5)
            ],
        )


def test_old_dead_letters_and_poison_are_archived_then_deleted(pg_url: str, tmp_path: Path) -> None:
    engine = create_engine(pg_url)
    _dead_and_poison(engine)

    out = _mutt(_env(pg_url, tmp_path), "retention", "run")

    assert "dead_letters 2" in out and "poison_letters 1" in out
    with engine.connect() as conn:
        left = conn.execute(select(DeadLetter.payload)).scalars().all()
        poison_left = conn.execute(select(PoisonLetter.payload)).scalars().all()
    assert left == [{"alert": {"n": 2}}]
    assert poison_left == [{"alert": {"n": 5}}]
    dead = _archived_rows(tmp_path / "dead_letters")
    assert sorted(r["payload"]["alert"]["n"] for r in dead) == [31, 45]
    assert {r["task_name"] for r in dead} == {"mutt.forward_to_moog"}
    poison = _archived_rows(tmp_path / "poison_letters")
    assert [r["payload"]["alert"]["n"] for r in poison] == [61]
    assert poison[0]["reason"] == "still failing"
    engine.dispose()


def test_late_rows_for_an_archived_month_get_their_own_archive(pg_url: str, tmp_path: Path) -> None:
    engine = _partitioned_db(pg_url, rows=20)
    _mutt(_env(pg_url, tmp_path), "retention", "run")
    directory = tmp_path / "event_audit_log"
    first_archives = {m["file"]: m["sha256"] for m in _manifests(directory)}

    # A redelivered old event after its month was archived: it lands in the default partition.
    _fill_month(engine, _month(-6), 2)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM event_audit_log_default")) == 2
    assert "default partition: 2 rows" in _mutt(
        _env(pg_url, tmp_path), "retention", "run", "--dry-run"
    )

    out = _mutt(_env(pg_url, tmp_path), "retention", "run")

    assert "2 rows moved out of the default partition" in out
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM event_audit_log_default")) == 0
    manifests = {m["file"]: m for m in _manifests(directory)}
    assert len(manifests) == 4
    for name, sha in first_archives.items():
        assert manifests[name]["sha256"] == sha
    late = [m for name, m in manifests.items() if name not in first_archives]
    assert late[0]["rows"] == 2 and late[0]["details"]["month"] == f"{_month(-6):%Y-%m}"
    engine.dispose()


def test_an_unusable_archive_dir_fails_before_anything_is_detached(
    pg_url: str, tmp_path: Path
) -> None:
    engine = _partitioned_db(pg_url, rows=10)
    _dead_and_poison(engine)
    before = _tables(engine)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    failures = _metric("mutt_retention_failures_total", step="archive")

    out = _mutt(_env(pg_url, blocker / "archive"), "retention", "run", code=1)

    assert "retention steps failed; their data is kept" in out
    assert _tables(engine) == before
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(DeadLetter)) == 3
    assert _metric("mutt_retention_failures_total", step="archive") == failures + 1
    engine.dispose()


# --- killed mid-way --------------------------------------------------------------------------


def _everything(engine: Engine, directory: Path) -> Counter[int]:
    """How often each event id is present: in the database (any table) or a verified archive."""
    seen: Counter[int] = Counter()
    retiring = _tables(engine)[1]
    with engine.connect() as conn:
        seen.update(conn.scalars(text("SELECT id FROM event_audit_log")))
        for table in retiring:
            seen.update(conn.scalars(text(f'SELECT id FROM "{table}"')))
    if directory.exists():
        seen.update(row["id"] for row in _archived_rows(directory))
    return seen


def _wait_for_lock_release(engine: Engine) -> None:
    # A killed run's backend lets go of the advisory lock once it notices its client is gone.
    deadline = time.monotonic() + 30
    with engine.connect() as conn:
        while conn.scalar(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")
        ):
            assert time.monotonic() < deadline, "a killed run's lock was never released"
            time.sleep(0.05)
            conn.rollback()


def _spawn(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mutt_app.cli", "retention", "run"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _kill_when(proc: subprocess.Popen[bytes], reached: Callable[[], bool]) -> None:
    """SIGKILL ``proc`` as soon as ``reached()``; fails if the run finished first."""
    deadline = time.monotonic() + 120
    while not reached():
        assert proc.poll() is None, f"the run ended before the kill point: {proc.stdout.read()!r}"  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_a_run_killed_mid_way_loses_nothing_and_the_next_run_completes(
    pg_url: str, tmp_path: Path
) -> None:
    engine = _partitioned_db(pg_url, rows=15_000)
    everything = _everything(engine, tmp_path)
    old = _rows_of_months(engine, OLD_MONTHS)
    directory = tmp_path / "event_audit_log"
    env = _env(pg_url, tmp_path)

    def detached() -> Callable[[], bool]:
        return lambda: bool(_tables(engine)[1])

    def writing() -> Callable[[], bool]:
        return lambda: directory.exists() and any(".tmp-" in p.name for p in directory.iterdir())

    def next_archive() -> Callable[[], bool]:
        count = len(_manifests(directory)) if directory.exists() else 0
        return lambda: directory.exists() and len(_manifests(directory)) > count

    for point in (detached, writing, next_archive, writing, next_archive):
        _wait_for_lock_release(engine)
        _kill_when(_spawn(env), point())
        # Nothing lost at any kill point: every row is in the database or a verified archive.
        missing = set(everything) - set(_everything(engine, directory))
        assert not missing, f"{len(missing)} rows lost after a kill when {point.__name__}"

    _wait_for_lock_release(engine)
    finished = subprocess.run(
        [sys.executable, "-m", "mutt_app.cli", "retention", "run"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    attached, retiring = _tables(engine)
    assert not retiring
    assert not [p for p in directory.iterdir() if ".tmp-" in p.name]
    for offset in OLD_MONTHS:
        assert partition_name(_month(offset)) not in attached
    archived_rows = _archived_rows(directory)
    # Each old row archived exactly once, equal to what the table held; the kept rows untouched.
    assert Counter(r["id"] for r in archived_rows) == Counter(old.keys())
    assert {r["id"]: r for r in archived_rows} == old
    assert _everything(engine, directory) == everything
    engine.dispose()


def test_a_second_run_waits_for_none_but_refuses_while_one_holds_the_lock(
    pg_url: str, tmp_path: Path
) -> None:
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": 0x6D757474_0002})
        out = _mutt(_env(pg_url, tmp_path), "retention", "run", code=1)
        assert "another retention run is in progress" in out
    engine.dispose()


# --- the embedded default (SQLite) -------------------------------------------------------------


def test_sqlite_archives_and_deletes_old_rows_by_date(tmp_path: Path) -> None:
    env = {"MUTT_DATA_DIR": str(tmp_path), "EVENT_RETENTION_DAYS": "10"}
    _mutt(env, "db", "upgrade")
    settings = load_settings(env)
    engine = make_engine(settings)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(EventAuditLog),
            [
                {
                    "event_timestamp": now - timedelta(days=days),
                    "received_at": now - timedelta(days=days),
                    "hostname": f"h{days}",
                    "message": "m",
                    "handling_decision": "Log_only",
                    "correlation_id": uuid.uuid4(),
                    "raw": {"days": days},
                }
                for days in (30, 11, 9, 0)
            ],
        )
        conn.execute(
            insert(ConfigAuditLog),
            [
                {
                    "changed_by": "a",
                    "operation": "CREATE",
                    "table_name": "t",
                    "changed_at": now - timedelta(days=4000),
                }
            ],
        )

    dry = _mutt(env, "retention", "run", "--dry-run")
    assert "event_audit_log older than" in dry and ": 2 rows" in dry
    out = _mutt(env, "retention", "run")

    assert "event_audit_log 2" in out
    with engine.connect() as conn:
        left = sorted(conn.scalars(select(EventAuditLog.hostname)))
        assert conn.scalar(select(func.count()).select_from(ConfigAuditLog)) == 1
    assert left == ["h0", "h9"]
    archived = _archived_rows(tmp_path / "archive" / "event_audit_log")
    assert sorted(r["hostname"] for r in archived) == ["h11", "h30"]
    assert sorted(r["raw"]["days"] for r in archived) == [11, 30]
    engine.dispose()


# --- the beat job -------------------------------------------------------------------------------


def test_beat_runs_retention_on_its_configured_schedule() -> None:
    schedule = beat_schedule(load_settings({"RETENTION_SCHEDULE": "5 3 * * 0"}))
    assert schedule["retention"]["task"] == "mutt.retention"
    job = schedule["retention"]["schedule"]
    assert job.hour == {3} and job.minute == {5} and job.day_of_week == {0}
    with pytest.raises(SettingsError, match="RETENTION_SCHEDULE"):
        load_settings({"RETENTION_SCHEDULE": "every day"})


def test_retention_task_archives_through_the_celery_app(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    engine = _partitioned_db(pg_url, rows=5)
    settings = load_settings(_env(pg_url, tmp_path, REDIS_URL=redis_url))
    app = Runtime(settings).celery
    app.loader.import_default_modules()  # the task modules, as a worker imports them
    result = app.tasks["mutt.retention"].apply().get()
    assert not result["failures"]
    assert {partition_name(_month(o)) for o in OLD_MONTHS} <= set(result["partitions_dropped"])
    assert result["rows_archived"] == {"event_audit_log": 15}
    runtime_of(app).close()
    engine.dispose()
