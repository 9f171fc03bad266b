"""SIGKILL of the Redis master mid-run: Sentinel promotes the replica and nothing accepted is lost.

The whole pipeline (gunicorn ingest, classify and forward workers, beat, the Moog sink) reaches
Redis only through three Sentinels (REDIS_SENTINEL_HOSTS). Ingest answers 2xx only once a replica
acknowledged a round (INGEST_MIN_REPLICAS 1, the default with Sentinel), so an event answered 2xx
before the kill is on the replica that Sentinel promotes. The killed node is started again after
the promotion, as its supervisor would, and rejoins as a replica: until then the new master has no
replica, and ingest answers 503 (the senders keep their events).
"""

from __future__ import annotations

import pytest

from tests.chaos.conftest import ChaosStackFactory
from tests.chaos.harness import ChaosRun
from tests.services import RedisSentinelCluster

NAME = "redis master SIGKILL"


@pytest.mark.slow
def test_sigkill_of_the_redis_master_loses_nothing(
    sentinel_cluster: RedisSentinelCluster, chaos_stack: ChaosStackFactory
) -> None:
    stack = chaos_stack(REDIS_URL="", **sentinel_cluster.env())
    with ChaosRun(stack) as run:
        run.wait_progress(0.3)
        killed = sentinel_cluster.master
        failure = run.failure(NAME)
        sentinel_cluster.kill_master()
        sentinel_cluster.wait_for_new_master(killed.port)
        sentinel_cluster.restart_as_replica(killed)
        run.wait_recovered(failure, timeout=60)
        figures = run.finish(NAME)
    assert figures.events >= 20_000
    assert figures.status_500 == 0
    assert figures.recovery[NAME] is not None
