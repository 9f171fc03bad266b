"""Database engine, sessions and migrations.

PostgreSQL in production; a SQLite file for the embedded default. The engine tries the current and then
the next database password on every new connection (see :mod:`mutt_app.rotation`), so a password rotated
in Vault never takes MUTT down.

Failover: DATABASE_URL may name a primary and its standbys (libpq's multi-host form, see
:meth:`mutt_app.config.Settings.database_dsn`) with ``target_session_attrs=read-write``, so every new
connection goes to whichever server takes writes now. A connection that dies with its server makes
SQLAlchemy throw away the whole pool (a server gone takes all its connections with it), and a pooled
connection that finds its server read-only (demoted in a switch-over) is treated the same way; a pooled
connection is pinged before use. The transaction that hit the failure still fails:
:func:`database_unavailable` tells its caller to try again later rather than give up on the work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import orjson
import sqlalchemy
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from alembic import command
from mutt_app.config import Settings
from mutt_app.rotation import install_postgres_rotation

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ALEMBIC_DIR = PROJECT_ROOT / "alembic"

# SQLSTATE 25006: a write reached a server that is (now) a read-only standby.
READ_ONLY_SQL_TRANSACTION = "25006"
# libpq waits this long for each server of a multi-host URL before it tries the next one; without
# it, a primary whose machine vanished (no RST, unlike a stopped server) holds every new connection
# for the kernel's TCP timeout, minutes. A connect_timeout in DATABASE_URL wins.
CONNECT_TIMEOUT_SECONDS = 5


def make_engine(settings: Settings, *, url: str | None = None) -> Engine:
    """An engine for the configured database (or ``url``), pooled as DB_POOL_* says."""
    url = url or settings.database_dsn()
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    connect_args: dict[str, object] = {"application_name": "mutt", "options": "-c timezone=UTC"}
    if "connect_timeout" not in make_url(url).query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    if settings.db_tls_enabled:
        connect_args["sslmode"] = "verify-full" if settings.db_tls_ca_cert_path else "require"
        if settings.db_tls_ca_cert_path:
            connect_args["sslrootcert"] = str(settings.db_tls_ca_cert_path)
    # Through the module, not a name imported once: tracing (mutt_app.tracing) wraps it there.
    engine = sqlalchemy.create_engine(
        url,
        pool_size=max(settings.db_pool_min_conn, 1),
        max_overflow=max(settings.db_pool_max_conn - settings.db_pool_min_conn, 0),
        pool_pre_ping=True,
        connect_args=connect_args,
        json_serializer=json_text,
        json_deserializer=orjson.loads,
    )
    install_postgres_rotation(engine, settings.db_passwords())
    event.listen(engine, "handle_error", _read_only_is_a_disconnect)
    return engine


def _read_only_is_a_disconnect(context: ExceptionContext) -> None:
    # After a switch-over the old primary may come back as a standby under the same address: a
    # connection to it is alive but will never take a write again. Dropping it (and the pool)
    # makes the next checkout connect anew, and target_session_attrs picks the writable server.
    if getattr(context.original_exception, "pgcode", None) == READ_ONLY_SQL_TRANSACTION:
        context.is_disconnect = True


def raise_dbapi_error(connection: Connection, exc: BaseException, statement: str) -> NoReturn:
    """Raise ``exc``, a DBAPI error from a raw cursor, as SQLAlchemy raises its own statements'.

    Code that drives psycopg2 directly for speed (the audit insert) is outside SQLAlchemy's error
    handling: without this a dead or read-only connection would go back to the pool as healthy, and
    the caller would see a bare psycopg2 error that :func:`database_unavailable` does not know.
    SQLAlchemy has no public entry for it; ``_handle_dbapi_exception`` is what its own executes
    call (wraps the error, runs handle_error, invalidates the connection and pool on a disconnect).
    """
    connection._handle_dbapi_exception(exc, statement, None, None, None)


def database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the database is away (down, failing over, read-only), not that the
    work was wrong: the caller should try the same work again later."""
    if isinstance(exc, OperationalError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def json_text(value: object) -> str:
    """``value`` as JSON text, for JSON columns (orjson: the audit's raw column is serialised for
    every event of every batch)."""
    return orjson.dumps(value).decode()


def _sqlite_engine(url: str) -> Engine:
    path = url.removeprefix("sqlite:///")
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = sqlalchemy.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        json_serializer=json_text,
        json_deserializer=orjson.loads,
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # WAL lets the web app read while a worker writes; the embedded default has several processes.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine``; sessions do not expire objects on commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session inside one transaction: committed on success, rolled back on error."""
    with factory.begin() as session:
        yield session


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def alembic_config(engine: Engine) -> AlembicConfig:
    """An Alembic configuration that migrates ``engine``'s database."""
    cfg = AlembicConfig(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision``."""
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Revert migrations down to ``revision``."""
    command.downgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
