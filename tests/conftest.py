"""Shared fixtures: a real PostgreSQL and a real Redis for every test that asks for one.

One private PostgreSQL cluster and one private Redis serve the whole session. Each test gets a fresh
database cloned from a template that already has the migrations applied (fast: a file copy), and an
emptied Redis.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from flask import Flask
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.commands import users as accounts
from mutt_app.config import Settings, load_settings
from mutt_app.db.engine import make_engine, session_factory, upgrade
from tests.e2e.stack import Stack, StackFactory
from tests.postgres import PostgresCluster
from tests.services import RedisSentinelCluster, RedisServer
from tests.web import PASSWORD

TEMPLATE_DB = "mutt_template"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_template(pg_cluster: PostgresCluster) -> str:
    """A database with every migration applied, cloned for each test."""
    pg_cluster.create_database(TEMPLATE_DB)
    settings = load_settings({"DATABASE_URL": pg_cluster.url(TEMPLATE_DB)})
    engine = make_engine(settings)
    upgrade(engine)
    engine.dispose()
    return TEMPLATE_DB


@pytest.fixture(scope="session")
def pg_clones(pg_cluster: PostgresCluster, pg_template: str) -> Iterator[Callable[[], str]]:
    """Takes a fresh clone of the template; the next one is cloned in the background meanwhile.

    CREATE DATABASE takes a quarter of a second, and nearly every test asks for a database: made
    while the test before runs, it is ready when the next test asks.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-clone")

    def clone() -> str:
        name = f"mutt_test_{uuid.uuid4().hex[:12]}"
        pg_cluster.create_database(name, template=pg_template)
        return name

    ahead: list[Future[str]] = []

    def take() -> str:
        name = None
        if ahead:
            with contextlib.suppress(Exception):  # it failed in the background: clone it now
                name = ahead.pop().result()
        ahead.append(pool.submit(clone))
        return name or clone()

    try:
        yield take
    finally:
        for spare in ahead:
            with contextlib.suppress(Exception):
                pg_cluster.drop_database(spare.result())
        pool.shutdown()


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster, pg_clones: Callable[[], str]) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test."""
    name = pg_clones()
    try:
        yield pg_cluster.url(name)
    finally:
        pg_cluster.drop_database(name)


@pytest.fixture
def empty_pg_url(pg_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh PostgreSQL database with no schema at all (for migration tests)."""
    name = f"mutt_empty_{uuid.uuid4().hex[:12]}"
    pg_cluster.create_database(name)
    try:
        yield pg_cluster.url(name)
    finally:
        pg_cluster.drop_database(name)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    redis_server.client().flushall()
    return redis_server.url


@pytest.fixture
def sentinel_cluster(request: pytest.FixtureRequest) -> Iterator[RedisSentinelCluster]:
    """A Redis master, its replicas and their Sentinels, started for this test.

    Parametrized indirectly, the parameter is a dict of RedisSentinelCluster keywords (e.g.
    ``{"replicas": 2}``); by default one replica and the class's Sentinel timings.
    """
    # Requested before a stack, it is stopped after the stack's processes.
    cluster = RedisSentinelCluster(**getattr(request, "param", {})).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def settings(pg_url: str, redis_url: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    """Settings pointing at this test's PostgreSQL database and Redis."""
    return load_settings(
        {
            "DATABASE_URL": pg_url,
            "REDIS_URL": redis_url,
            "MUTT_DATA_DIR": str(tmp_path),
            # The ingest apps of the tests take posts without a key unless a test sets one.
            "INGEST_ALLOW_OPEN": "true",
        }
    )


@pytest.fixture
def make_stack(pg_url: str, redis_url: str, tmp_path) -> Iterator[StackFactory]:  # type: ignore[no-untyped-def]
    """Build a :class:`Stack` of real MUTT processes with extra environment (e2e and chaos tests);
    every stack is stopped after the test."""
    stacks: list[Stack] = []

    def build(**env: str) -> Stack:
        base = {
            "DATABASE_URL": pg_url,
            "REDIS_URL": redis_url,
            "MUTT_DATA_DIR": str(tmp_path / "data"),
            "LOG_LEVEL": "INFO",
        }
        stack = Stack({**base, **env}, tmp_path)
        stacks.append(stack)
        return stack

    yield build
    # Once the test is over nothing checks how its processes end (a test of shutting down stops
    # them itself): SIGKILLed at once, instead of a second or two of warm shutdown per test. Their
    # connections go with the test's database (DROP ... FORCE) and their Redis keys with the flush.
    for stack in stacks:
        stack.stop(hard=True)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """Sessions on this test's PostgreSQL database, or with ``indirect`` parameter "sqlite" on the
    embedded default's SQLite, migrated."""
    if getattr(request, "param", "postgresql") != "sqlite":
        yield session_factory(request.getfixturevalue("engine"))
        return
    engine = make_engine(load_settings({"MUTT_DATA_DIR": str(tmp_path)}))
    upgrade(engine)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def password_hash() -> str:
    """``tests.web.PASSWORD`` hashed once, as accounts hashes it (scrypt: a tenth of a second)."""
    return accounts.generate_password_hash(PASSWORD)


@pytest.fixture
def users(sessions: sessionmaker[Session], password_hash: str) -> None:
    """alice (admin), victor (viewer) and olga (operator), all with ``tests.web.PASSWORD``.

    Created through the accounts command, with the session's one hash of the password: three
    fresh hashes made every test that logs in three tenths of a second slower. Only while they are
    created: the test's own accounts get hashes of their own.
    """
    hash_password = accounts.generate_password_hash
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            accounts,
            "generate_password_hash",
            lambda password: password_hash if password == PASSWORD else hash_password(password),
        )
        with sessions.begin() as session:
            accounts.create_user(session, "alice", PASSWORD, "admin", changed_by="test")
            accounts.create_user(session, "victor", PASSWORD, "viewer", changed_by="test")
            accounts.create_user(session, "olga", PASSWORD, "operator", changed_by="test")


def close_web_app(app: Flask) -> None:
    """Close what a web app's Runtime opened on first use (its engine and Redis client), and the
    ingest endpoint's publishing pool when the app is ingest."""
    runtime = app.extensions.get("mutt")
    if runtime is not None:
        runtime.close()
    ingestor = app.extensions.get("mutt_ingest")
    if ingestor is not None:
        ingestor.close()
