"""`mutt db ...` against real PostgreSQL and the embedded SQLite default."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import create_engine, func, select, text

from mutt_app.cli import main
from mutt_app.commands.seed import SEED_RULES
from mutt_app.db.models import AlertRule, ConfigAuditLog
from tests.postgres import PostgresCluster
from tests.records import HEAD
from tests.services import free_port


def _mutt(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_upgrade_seed_partitions_on_postgres(empty_pg_url: str) -> None:
    env = {"DATABASE_URL": empty_pg_url, "PARTITION_PRECREATE_MONTHS": "2"}
    assert f"database at revision {HEAD}" in _mutt(env, "db", "upgrade")
    assert f"{len(SEED_RULES)} added" in _mutt(env, "db", "seed")
    assert f"0 added, {len(SEED_RULES)} already present" in _mutt(env, "db", "seed")
    out = _mutt(env, "db", "partitions")
    assert "3 partitions checked, 3 created" in out
    assert "3 partitions checked, 0 created" in _mutt(env, "db", "partitions")
    assert "event_audit_log_" in _mutt(env, "db", "partitions", "--months-ahead", "0")

    engine = create_engine(empty_pg_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(AlertRule)).scalar() == len(SEED_RULES)
        audit = conn.execute(select(ConfigAuditLog.operation, ConfigAuditLog.changed_by)).all()
        assert audit == [("CREATE", "mutt db seed")] * len(SEED_RULES)
    engine.dispose()

    assert "revision base" in _mutt(env, "db", "downgrade", "--yes")
    engine = create_engine(empty_pg_url)
    with engine.connect() as conn:
        left = conn.execute(
            text(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'alembic_version'"
            )
        ).scalar()
    engine.dispose()
    assert left == 0


def test_embedded_default_needs_no_settings(tmp_path) -> None:
    env = {"MUTT_DATA_DIR": str(tmp_path)}
    assert "sqlite" in _mutt(env, "db", "upgrade")
    assert f"{len(SEED_RULES)} added" in _mutt(env, "db", "seed")
    assert "nothing to do" in _mutt(env, "db", "partitions")
    assert (tmp_path / "mutt.db").exists()


def test_invalid_setting_fails_with_one_line(tmp_path) -> None:
    result = CliRunner().invoke(main, ["db", "current"], env={"DB_PORT": "x"})
    assert result.exit_code != 0
    assert result.output.strip() == "Error: invalid setting DB_PORT='x': " + (
        "Input should be a valid integer, unable to parse string as an integer"
    )


def test_upgrade_through_a_multi_host_url_skips_a_dead_server(
    empty_pg_url: str, pg_cluster: PostgresCluster
) -> None:
    # The first server of the list listens nowhere: libpq goes on to the next, as after losing
    # the primary's machine; the CLI and Alembic's env build their engine from the same URL.
    database = empty_pg_url.rsplit("/", 1)[1]
    url = (
        f"postgresql://postgres@127.0.0.1:{free_port()},127.0.0.1:{pg_cluster.port}/{database}"
        "?target_session_attrs=read-write"
    )
    assert f"database at revision {HEAD}" in _mutt({"DATABASE_URL": url}, "db", "upgrade")
