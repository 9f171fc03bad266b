"""MUTT's engine through a PostgreSQL failover: a real primary and streaming standby, the primary
stopped hard, the standby promoted; and a server that turns read-only under a pooled connection."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from mutt_app.config import load_settings
from mutt_app.db.engine import database_unavailable, make_engine
from tests.postgres import PostgresCluster, PostgresStandbyPair


@pytest.fixture
def pair() -> Iterator[PostgresStandbyPair]:
    pair = PostgresStandbyPair().start()
    try:
        yield pair
    finally:
        pair.stop()


def _server_port(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT inet_server_port()")).scalar_one()


def test_the_pair_replicates_synchronously(pair: PostgresStandbyPair) -> None:
    # What the failover tests lean on: a row committed on the primary is on the standby already.
    pair.primary.query("CREATE TABLE probe AS SELECT 7 AS n; SELECT 1")
    assert pair.standby is not None
    assert pair.standby.query("SELECT n FROM probe") == 7
    assert pair.standby.query("SELECT pg_is_in_recovery()") is True


def test_engine_follows_the_promoted_standby(pair: PostgresStandbyPair) -> None:
    primary, standby = pair.ports
    # The standby is named first: target_session_attrs=read-write passes over it.
    url = (
        f"postgresql://postgres@127.0.0.1:{standby},127.0.0.1:{primary}/postgres"
        "?target_session_attrs=read-write"
    )
    engine = make_engine(load_settings({"DATABASE_URL": url, "DB_POOL_MIN_CONN": "3"}))
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE written (n int)"))
        # Fill the pool: every one of these connections dies with the primary.
        held = [engine.connect() for _ in range(3)]
        assert {c.execute(text("SELECT inet_server_port()")).scalar_one() for c in held} == {
            primary
        }
        for conn in held[1:]:
            conn.close()
        mid = held[0]
        mid.execute(text("INSERT INTO written VALUES (1)"))

        pair.stop_primary_hard()
        with pytest.raises(DBAPIError) as caught:
            mid.execute(text("INSERT INTO written VALUES (2)"))
        assert database_unavailable(caught.value)
        assert caught.value.connection_invalidated
        mid.close()

        # Before the promotion no server takes writes: a new connection fails, as unavailable.
        with pytest.raises(DBAPIError) as refused:
            _server_port(engine)
        assert database_unavailable(refused.value)

        pair.promote()
        # Every connection from now on, pooled or new, is to the promoted standby.
        assert [_server_port(engine) for _ in range(5)] == [standby] * 5
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO written VALUES (3)"))
            assert conn.execute(text("SELECT array_agg(n) FROM written")).scalar_one() == [3]
    finally:
        engine.dispose()


def test_a_server_turned_read_only_is_dropped_and_retried() -> None:
    cluster = PostgresCluster().start()
    engine = make_engine(load_settings({"DATABASE_URL": cluster.url()}))
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE written (n int)"))
            first_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        # As a demoted primary would: the pooled connection is alive, but takes no writes.
        cluster.query("ALTER SYSTEM SET default_transaction_read_only = on")
        cluster.query("SELECT pg_reload_conf()")
        _wait_for_reload(cluster)
        with pytest.raises(DBAPIError) as caught, engine.begin() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() == first_pid
            conn.execute(text("INSERT INTO written VALUES (1)"))
        assert caught.value.orig.pgcode == "25006"  # type: ignore[union-attr]
        # An outage, not a bad statement: classify retries the batch instead of dead-lettering it.
        assert database_unavailable(caught.value)
        assert caught.value.connection_invalidated

        cluster.query("ALTER SYSTEM RESET default_transaction_read_only")
        cluster.query("SELECT pg_reload_conf()")
        with engine.begin() as conn:
            # Not the connection that met the read-only server: that one was thrown away.
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != first_pid
            conn.execute(text("INSERT INTO written VALUES (1)"))
    finally:
        engine.dispose()
        with contextlib.suppress(Exception):
            cluster.stop()


def _wait_for_reload(cluster: PostgresCluster) -> None:
    """Wait until the postmaster has read the new configuration: a new session sees it. It
    signals every backend when it reads it, and the pooled one takes it in before its next
    command; pg_reload_conf() alone returns before any of that (a race on a loaded machine)."""
    deadline = time.monotonic() + 10
    while cluster.query("SHOW default_transaction_read_only") != "on":
        assert time.monotonic() < deadline, "the configuration was not reloaded within 10 s"
        time.sleep(0.05)
