"""Redis through Sentinel: settings, a client that follows a failover, and accepted-means-replicated.

Every test here runs a real master, replica and three Sentinels (tests.services.RedisSentinelCluster)
and causes the failure it is about: SIGKILL of the master, a replica stopped.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import redis

from mutt_app import metrics
from mutt_app.config import SettingsError, load_settings
from mutt_app.rotation import redis_client
from mutt_app.runtime import WORKER
from mutt_app.tasks.classify import QUEUE
from mutt_app.web import create_ingest_app
from tests import broker_messages
from tests.services import RedisSentinelCluster, wait_for

OLD, NEW = "sentinel-old-pass", "sentinel-new-pass"


# --- settings ----------------------------------------------------------------------------------


def test_sentinel_hosts_are_parsed_and_defaults_follow_them() -> None:
    settings = load_settings({"REDIS_SENTINEL_HOSTS": "s1:26379, s2:26380,"})
    assert settings.redis_sentinel_hosts == (("s1", 26379), ("s2", 26380))
    assert settings.redis_sentinel_master == "mymaster"
    assert settings.sentinel and not settings.embedded_redis
    assert settings.min_replicas == 1
    assert load_settings({}).min_replicas == 0
    assert (
        load_settings({"REDIS_SENTINEL_HOSTS": "s1:1", "INGEST_MIN_REPLICAS": "0"}).min_replicas
        == 0
    )
    assert load_settings({"INGEST_MIN_REPLICAS": "2"}).min_replicas == 2


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"REDIS_SENTINEL_HOSTS": "sentinel1"}, "REDIS_SENTINEL_HOSTS='sentinel1'"),
        ({"REDIS_SENTINEL_HOSTS": "s1:99999"}, "REDIS_SENTINEL_HOSTS"),
        ({"REDIS_SENTINEL_HOSTS": "s1:x"}, "REDIS_SENTINEL_HOSTS"),
        ({"REDIS_SENTINEL_HOSTS": "s1:26379", "REDIS_URL": "redis://h/0"}, "unset REDIS_URL"),
        ({"REDIS_SENTINEL_HOSTS": "s1:26379", "REDIS_HOST": "h"}, "unset REDIS_URL and REDIS_HOST"),
        ({"REDIS_SENTINEL_MASTER": "my master"}, "REDIS_SENTINEL_MASTER"),
        ({"INGEST_MIN_REPLICAS": "-1"}, "INGEST_MIN_REPLICAS"),
        ({"INGEST_REPLICA_TIMEOUT_MS": "0"}, "INGEST_REPLICA_TIMEOUT_MS"),
    ],
)
def test_bad_sentinel_settings_are_refused_with_one_line(environ: dict, names: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(environ)
    message = str(refused.value)
    assert names in message and "\n" not in message


def test_the_sentinel_password_is_not_echoed_nor_logged() -> None:
    from mutt_app.logs import secret_values
    from mutt_app.vault import SECRET_KEYS

    settings = load_settings({"REDIS_SENTINEL_HOSTS": "s:1", "REDIS_SENTINEL_PASSWORD": "hush"})
    assert "hush" not in repr(settings)
    assert "hush" in secret_values(settings)  # masked in every log line
    assert "REDIS_SENTINEL_PASSWORD" in SECRET_KEYS  # may come from Vault like the others


# A worker's retries with a shorter socket timeout, so a test waits less on a dead master.
_PATIENT = replace(WORKER, socket_timeout=5, connect_timeout=2)


# --- the client factory ------------------------------------------------------------------------


def test_the_factory_client_follows_a_failover_without_being_rebuilt(
    sentinel_cluster: RedisSentinelCluster,
) -> None:
    settings = load_settings(sentinel_cluster.env())
    client = redis_client(settings, **_PATIENT.client_options())
    try:
        client.set("before", "1")
        first = sentinel_cluster.master.port
        assert client.connection_pool.get_master_address()[1] == first
        sentinel_cluster.master.client().execute_command("WAIT", 1, 2000)
        sentinel_cluster.kill_master()
        promoted = sentinel_cluster.wait_for_new_master(first)

        # The same client object: its next connection asks the Sentinels again.
        deadline_ok = False
        for _ in range(50):
            try:
                client.set("after", "2")
                deadline_ok = True
                break
            except redis.ConnectionError:
                continue
        assert deadline_ok, "the client never reached the promoted master"
        assert client.get("before") == b"1"
        assert promoted.client().get("after") == b"2"
        assert client.connection_pool.get_master_address()[1] == promoted.port
    finally:
        client.close()


def test_the_factory_client_keeps_password_rotation_through_sentinel() -> None:
    cluster = RedisSentinelCluster(password=OLD).start()
    try:
        env = {**cluster.env(), "REDIS_PASS_CURRENT": OLD, "REDIS_PASS_NEXT": NEW}
        env.pop("REDIS_PASSWORD")
        client = redis_client(load_settings(env), socket_timeout=5)
        client.set("k", "v")
        for node in cluster.nodes:
            admin = node.client()
            admin.config_set("masterauth", NEW)
            admin.config_set("requirepass", NEW)
            admin.execute_command("CLIENT", "KILL", "TYPE", "normal")
            node.password = NEW
        # The long-lived client's connection was dropped; its next one logs in with the next
        # password, through the master the Sentinels name.
        assert client.get("k") == b"v"
        client.close()
    finally:
        cluster.stop()


def test_the_sentinel_password_is_sent_to_the_sentinels() -> None:
    cluster = RedisSentinelCluster(sentinel_password="sentinel-secret").start()
    try:
        client = redis_client(load_settings(cluster.env()), socket_timeout=5)
        assert client.set("k", "v")
        client.close()
        env = cluster.env()
        env.pop("REDIS_SENTINEL_PASSWORD")
        # Without it no Sentinel answers, so no master is found.
        with pytest.raises(redis.RedisError):
            redis_client(load_settings(env), socket_timeout=5).ping()
    finally:
        cluster.stop()


# --- Celery's broker and RedBeat ---------------------------------------------------------------


def _publish(app, queue: str) -> None:  # type: ignore[no-untyped-def]
    with app.producer_or_acquire() as producer:
        app.send_task(
            "mutt.noop",
            queue=queue,
            producer=producer,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
        )


def test_the_broker_and_redbeat_follow_a_failover(
    sentinel_cluster: RedisSentinelCluster, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from redbeat.schedulers import get_redis

    from mutt_app.runtime import Runtime

    settings = load_settings({**sentinel_cluster.env(), "MUTT_DATA_DIR": str(tmp_path)})
    app = Runtime(settings).celery
    assert app.conf.broker_url.count("sentinel://") == 3
    _publish(app, "sentinel-test")
    get_redis(app).set("mutt:redbeat:probe", "1")
    first = sentinel_cluster.master
    assert first.client().llen("sentinel-test") == 1
    first.client().execute_command("WAIT", 1, 2000)
    sentinel_cluster.kill_master()
    promoted = sentinel_cluster.wait_for_new_master(first.port)

    # The producer pool's connection was to the dead master; a publish fails at most a few
    # times (the ingest answers 503 then) and then reaches the promoted master.
    for _ in range(20):
        try:
            _publish(app, "sentinel-test")
            break
        except Exception:  # kombu raises several kinds while the master is gone
            continue
    assert promoted.client().llen("sentinel-test") == 2
    assert get_redis(app).get("mutt:redbeat:probe") == "1"
    get_redis(app).set("mutt:redbeat:probe", "2")
    assert promoted.client().get("mutt:redbeat:probe") == b"2"


# --- accepted means replicated -----------------------------------------------------------------


def _events(tag: str, n: int = 3) -> list[dict]:
    now = datetime.now(UTC).isoformat()
    return [
        {"timestamp": now, "hostname": f"{tag}-host", "message": f"{tag} {i}",
         "correlation_id": _cid(f"{tag}-{i}")}
        for i in range(n)
    ]  # fmt: skip


def _cid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def _ids(tag: str) -> set[str]:
    return {_cid(f"{tag}-{i}") for i in range(3)}


def _queued_ids(client: redis.Redis) -> set[str]:
    batches = [broker_messages.task_args(raw)[0] for raw in client.lrange(QUEUE, 0, -1)]
    return {e["correlation_id"] for batch in batches for e in batch}


def test_ingest_answers_503_until_a_replica_acknowledges_and_loses_nothing(
    sentinel_cluster: RedisSentinelCluster, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(
        {
            **sentinel_cluster.env(),
            "MUTT_DATA_DIR": str(tmp_path),
            "INGEST_REPLICA_TIMEOUT_MS": "300",
            "INGEST_ALLOW_OPEN": "true",
        }
    )
    assert settings.min_replicas == 1
    app = create_ingest_app(settings)
    client = app.test_client()
    master, replica = sentinel_cluster.master, sentinel_cluster.replicas[0]
    try:
        ok = client.post("/api/v2/ingest", json=_events("first"))
        assert ok.status_code == 200
        # Answered 2xx: already on the replica, not only on the master.
        assert _ids("first") <= _queued_ids(replica.client())

        replica.kill()
        shortfalls = metrics.INGEST_REPLICATION_SHORTFALL._value.get()
        caplog.set_level(logging.WARNING, logger="mutt_app.web.ingest.replication")
        refused = client.post("/api/v2/ingest", json=_events("second"))
        assert refused.status_code == 503
        assert refused.headers["Retry-After"].isdigit()
        assert "replicated" in refused.get_json()["error"]
        assert metrics.INGEST_REPLICATION_SHORTFALL._value.get() == shortfalls + 1
        assert any("0 of 1 replicas acknowledged" in r.getMessage() for r in caplog.records)
        # Not acknowledged, yet nothing is dropped: the round stays in the ledger and the queue on
        # the master, and the sender keeps its events to send again.
        assert _ids("second") <= _queued_ids(master.client())

        replica.start()
        wait_for(lambda: replica.client().info("replication")["master_link_status"] == "up", 20,
                 "the replica to resync")  # fmt: skip
        # The sender posts again, as told; until the master counts the replica's first
        # acknowledgement that may still be a 503.
        statuses = []
        for _ in range(40):
            statuses.append(client.post("/api/v2/ingest", json=_events("second")).status_code)
            if statuses[-1] != 503:
                break
            time.sleep(0.25)
        assert statuses[-1] == 200 and set(statuses[:-1]) <= {503}, statuses
        assert _ids("second") <= _queued_ids(replica.client())
    finally:
        app.extensions["mutt_ingest"].redis.close()


def test_without_sentinel_ingest_does_not_wait(redis_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(
        {"REDIS_URL": redis_url, "MUTT_DATA_DIR": str(tmp_path), "INGEST_ALLOW_OPEN": "true"}
    )
    assert settings.min_replicas == 0
    app = create_ingest_app(settings)
    try:
        # A lone Redis has no replica: with WAIT this would be a 503.
        assert app.test_client().post("/api/v2/ingest", json=_events("lone")).status_code == 200
    finally:
        app.extensions["mutt_ingest"].redis.close()


def test_a_manual_failover_is_followed_too(
    sentinel_cluster: RedisSentinelCluster, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """The runbook's fail-back (SENTINEL FAILOVER): the old master lives on, demoted to a replica.

    Sentinel closes the demoted master's client connections, so the factory's client and the broker
    reconnect and find the new master; a write never lands on the demoted one (it would refuse it:
    READONLY, which the client also takes as a sign to ask again).
    """
    from mutt_app.runtime import Runtime

    settings = load_settings({**sentinel_cluster.env(), "MUTT_DATA_DIR": str(tmp_path)})
    client = redis_client(settings, **_PATIENT.client_options())
    app = Runtime(settings).celery
    try:
        client.set("k", "before")
        _publish(app, "failback-test")
        old = sentinel_cluster.master
        sentinel_cluster.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", "mymaster")
        new = sentinel_cluster.wait_for_new_master(old.port)
        wait_for(lambda: old.client().info("replication")["role"] == "slave", 20, "the demotion")
        assert client.set("k", "after")
        for _ in range(20):
            try:
                _publish(app, "failback-test")
                break
            except Exception:  # kombu raises several kinds while it reconnects
                continue
        assert new.client().get("k") == b"after"
        assert new.client().llen("failback-test") == 2
    finally:
        client.close()


def test_tls_to_the_master_and_the_sentinels(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """REDIS_TLS_ENABLED and REDIS_SENTINEL_TLS_ENABLED, verified against REDIS_CA_CERT_PATH: the
    factory's client, the broker and RedBeat all reach the master over TLS through TLS Sentinels."""
    from redbeat.schedulers import get_redis

    from mutt_app.runtime import Runtime

    cluster = RedisSentinelCluster(tls=True).start()
    try:
        settings = load_settings({**cluster.env(), "MUTT_DATA_DIR": str(tmp_path)})
        client = redis_client(settings, socket_timeout=5)
        assert client.set("k", "v")
        client.close()
        app = Runtime(settings).celery
        _publish(app, "tls-test")
        get_redis(app).set("mutt:redbeat:tls", "1")
        master = cluster.master.client()
        assert master.llen("tls-test") == 1 and master.get("mutt:redbeat:tls") == b"1"
        # Without the TLS settings nothing answers in plain text.
        plain = {**cluster.env(), "REDIS_SENTINEL_TLS_ENABLED": "false"}
        with pytest.raises(redis.RedisError):
            redis_client(load_settings(plain), socket_timeout=2).ping()
    finally:
        cluster.stop()
