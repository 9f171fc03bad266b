"""Password rotation: Redis and PostgreSQL keep working while their password changes under MUTT.

Real servers: a private password-protected redis-server per test, and the session's PostgreSQL cluster
whose non-superuser roles must authenticate with a password over TCP (scram-sha-256, no trust).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg2
import pytest
import redis
import sqlalchemy.exc
from sqlalchemy import Engine, text

from mutt_app.config import load_settings
from mutt_app.db.engine import make_engine
from mutt_app.rotation import NoWorkingPassword, redis_client, redis_password
from tests.postgres import PostgresCluster
from tests.services import RedisServer, free_port

OLD, NEW = "old-pass", "new-pass"
PG_CURRENT, PG_NEXT = "pw-current", "pw-next"
ALL_SECRETS = (
    OLD,
    NEW,
    PG_CURRENT,
    PG_NEXT,
    "third-pass",
    "wrong-1",
    "wrong-2",
    "pw-something-else",
)


def assert_no_secret_logged(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        message = record.getMessage()
        for secret in ALL_SECRETS:
            assert secret not in message, f"{secret!r} logged by {record.name}"


def warnings_mentioning(caplog: pytest.LogCaptureFixture, word: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and word in r.getMessage()
    ]


# --- Redis -------------------------------------------------------------------------------------


@pytest.fixture
def redis_with_password() -> Iterator[RedisServer]:
    server = RedisServer(password=OLD).start()
    try:
        yield server
    finally:
        server.stop()


def rotate_redis(server: RedisServer, new_password: str) -> None:
    """Change requirepass and drop every other client, as a Redis restart with new config would."""
    admin = server.client()
    try:
        admin.config_set("requirepass", new_password)
        # Redis does not re-check connections that are already authenticated.
        admin.execute_command("CLIENT", "KILL", "TYPE", "normal")
    finally:
        admin.close()
    server.password = new_password  # so server.client() and stop() keep working


def redis_settings(server: RedisServer, current: str = OLD, next_: str = NEW):  # type: ignore[no-untyped-def]
    return load_settings(
        {
            "REDIS_URL": f"redis://127.0.0.1:{server.port}/0",
            "REDIS_PASS_CURRENT": current,
            "REDIS_PASS_NEXT": next_,
        }
    )


def test_redis_client_uses_the_current_password(
    redis_with_password: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = redis_client(redis_settings(redis_with_password))
    try:
        assert client.set("k", "v")
        assert client.get("k") == b"v"
    finally:
        client.close()
    assert not warnings_mentioning(caplog, "next")
    assert_no_secret_logged(caplog)


def test_redis_client_switches_to_the_next_password_after_rotation(
    redis_with_password: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = redis_settings(redis_with_password)
    before = redis_client(settings)
    before.set("k", "v")
    before.close()
    rotate_redis(redis_with_password, NEW)
    caplog.set_level(logging.DEBUG)

    after = redis_client(settings)
    try:
        assert after.get("k") == b"v"
    finally:
        after.close()
    assert redis_password(settings) == NEW
    assert warnings_mentioning(caplog, "next")
    assert_no_secret_logged(caplog)


def test_a_long_lived_redis_client_survives_rotation(
    redis_with_password: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A worker builds its client once; its pool must log in with the next password on reconnect.
    client = redis_client(redis_settings(redis_with_password))
    try:
        client.set("k", "v")
        rotate_redis(redis_with_password, NEW)  # also kills this client's pooled connection
        caplog.set_level(logging.DEBUG)

        assert client.get("k") == b"v"
        assert len(warnings_mentioning(caplog, "next")) == 1

        # Later connections try the next password first: no second switch to log.
        client.connection_pool.disconnect()
        assert client.set("k2", "v2")
        assert len(warnings_mentioning(caplog, "next")) == 1
    finally:
        client.close()
    assert_no_secret_logged(caplog)


def test_a_long_lived_redis_client_fails_clearly_when_both_passwords_are_refused(
    redis_with_password: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis_client(redis_settings(redis_with_password))
    try:
        client.ping()
        rotate_redis(redis_with_password, "third-pass")
        caplog.set_level(logging.DEBUG)

        with pytest.raises(redis.AuthenticationError, match="refused every configured password"):
            client.ping()
    finally:
        client.close()
    assert_no_secret_logged(caplog)


def test_redis_refusing_both_passwords_raises_no_working_password(
    redis_with_password: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = redis_settings(redis_with_password, current="wrong-1", next_="wrong-2")

    with pytest.raises(NoWorkingPassword):
        redis_client(settings)
    assert_no_secret_logged(caplog)


def test_redis_password_is_really_required(redis_with_password: RedisServer) -> None:
    # Guard against a test server that would accept anything.
    for url in ("redis://:wrong@127.0.0.1:{}/0", "redis://127.0.0.1:{}/0"):
        client = redis.Redis.from_url(url.format(redis_with_password.port))
        try:
            with pytest.raises(redis.AuthenticationError):
                client.ping()
        finally:
            client.close()


# --- PostgreSQL --------------------------------------------------------------------------------


@dataclass
class PgRole:
    cluster: PostgresCluster
    name: str
    database: str

    def set_password(self, password: str) -> None:
        with contextlib.closing(self.cluster.admin()) as conn, conn.cursor() as cur:
            cur.execute(f"ALTER ROLE {self.name} PASSWORD %s", (password,))

    def url(self) -> str:
        return f"postgresql://{self.name}@127.0.0.1:{self.cluster.port}/{self.database}"

    def engine(self, **passwords: str) -> Engine:
        return make_engine(load_settings({"DATABASE_URL": self.url(), **passwords}))


@pytest.fixture
def pg_role(pg_cluster: PostgresCluster) -> Iterator[PgRole]:
    """A password-authenticated role (password PG_CURRENT) owning a fresh database."""
    suffix = uuid.uuid4().hex[:10]
    role = PgRole(pg_cluster, f"rot_{suffix}", f"rot_db_{suffix}")
    with contextlib.closing(pg_cluster.admin()) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {role.name} LOGIN PASSWORD %s", (PG_CURRENT,))
        cur.execute(f'CREATE DATABASE "{role.database}" OWNER {role.name}')
    try:
        yield role
    finally:
        with contextlib.closing(pg_cluster.admin()) as conn, conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{role.database}" WITH (FORCE)')
            cur.execute(f"DROP ROLE IF EXISTS {role.name}")


def select_one(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT 1")).scalar_one()


def test_postgres_needs_the_right_password(pg_role: PgRole) -> None:
    # What makes the rotation tests meaningful: this role is not trusted.
    for passwords in ({"DB_PASS": "wrong"}, {}):
        engine = pg_role.engine(**passwords)
        try:
            with pytest.raises(
                sqlalchemy.exc.OperationalError,
                match=r"password authentication failed|no password supplied",
            ):
                select_one(engine)
        finally:
            engine.dispose()
    engine = pg_role.engine(DB_PASS=PG_CURRENT)
    try:
        assert select_one(engine) == 1
    finally:
        engine.dispose()


def test_postgres_engine_switches_to_the_next_password(
    pg_role: PgRole, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    engine = pg_role.engine(DB_PASS_CURRENT=PG_CURRENT, DB_PASS_NEXT=PG_NEXT)
    try:
        assert select_one(engine) == 1
        assert not warnings_mentioning(caplog, "next")

        pg_role.set_password(PG_NEXT)
        engine.dispose()  # pooled connections stay logged in; new ones meet the new password
        assert select_one(engine) == 1
        assert len(warnings_mentioning(caplog, "next")) == 1

        # The password that worked is tried first from now on: no warning on later connections.
        engine.dispose()
        assert select_one(engine) == 1
        assert len(warnings_mentioning(caplog, "next")) == 1
    finally:
        engine.dispose()
    assert_no_secret_logged(caplog)


def test_postgres_rotation_through_a_multi_host_url(pg_role: PgRole) -> None:
    # libpq reports every server it tried in one error: a dead first server and a refused
    # password on the second must still read as "wrong password", so the next one is tried.
    dead = free_port()
    url = (
        f"postgresql://{pg_role.name}@127.0.0.1:{dead},127.0.0.1:{pg_role.cluster.port}"
        f"/{pg_role.database}?target_session_attrs=read-write"
    )
    settings = load_settings(
        {"DATABASE_URL": url, "DB_PASS_CURRENT": PG_CURRENT, "DB_PASS_NEXT": PG_NEXT}
    )
    pg_role.set_password(PG_NEXT)
    engine = make_engine(settings)
    try:
        assert select_one(engine) == 1
    finally:
        engine.dispose()


def test_postgres_refusing_both_passwords_raises_no_working_password(
    pg_role: PgRole, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pg_role.set_password("pw-something-else")
    engine = pg_role.engine(DB_PASS_CURRENT=PG_CURRENT, DB_PASS_NEXT=PG_NEXT)
    try:
        with pytest.raises(NoWorkingPassword) as caught:
            select_one(engine)
    finally:
        engine.dispose()
    assert isinstance(caught.value.__cause__, psycopg2.OperationalError)
    assert_no_secret_logged(caplog)
