"""Dynamic configuration on a real Redis: typed values, cache, pub/sub callbacks."""

from __future__ import annotations

import pytest
import redis

from mutt_app.config import load_settings
from mutt_app.dynamic_config import DynamicConfig

SETTINGS = load_settings({"MOOG_RATE_LIMIT": "40"})


def test_unset_key_falls_back_to_the_static_setting(redis_client: redis.Redis) -> None:
    config = DynamicConfig(redis_client, SETTINGS)
    assert config.get("moog_rate_limit") == 40
    assert config.get("alerter_shed_mode") == "dlq"


def test_set_validates_and_types(redis_client: redis.Redis) -> None:
    config = DynamicConfig(redis_client, SETTINGS)
    assert config.set("moog_rate_limit", "75") == 75
    assert config.get("moog_rate_limit") == 75
    assert config.set("moog_rate_period", "0.5") == 0.5
    with pytest.raises(ValueError, match="moog_rate_limit must be >= 1"):
        config.set("moog_rate_limit", "0")
    with pytest.raises(ValueError, match="must be int"):
        config.set("moog_rate_limit", "fast")
    with pytest.raises(ValueError, match="one of dlq, defer"):
        config.set("alerter_shed_mode", "drop")
    with pytest.raises(ValueError, match="unknown config key"):
        config.set("nonsense", "1")


def test_values_are_cached_for_the_ttl(redis_client: redis.Redis) -> None:
    config = DynamicConfig(redis_client, SETTINGS, cache_ttl=60)
    assert config.get("alerter_queue_warn_threshold") == 1000
    redis_client.set("mutt:config:alerter_queue_warn_threshold", "7")  # behind the cache's back
    assert config.get("alerter_queue_warn_threshold") == 1000
    assert (
        DynamicConfig(redis_client, SETTINGS, cache_ttl=0).get("alerter_queue_warn_threshold") == 7
    )


def test_delete_restores_the_default_and_list_shows_overrides(redis_client: redis.Redis) -> None:
    config = DynamicConfig(redis_client, SETTINGS)
    config.set("moog_rate_limit", 10)
    listed = config.get_all()
    assert listed["moog_rate_limit"] == {
        "value": 10,
        "overridden": True,
        "help": listed["moog_rate_limit"]["help"],
    }
    config.delete("moog_rate_limit")
    assert config.get("moog_rate_limit") == 40
    assert config.get_all()["moog_rate_limit"]["overridden"] is False


def test_unreachable_redis_uses_the_default(redis_client: redis.Redis) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    assert DynamicConfig(dead, SETTINGS).get("moog_rate_limit") == 40


def test_the_seed_shed_thresholds_are_read_from_the_environment_and_a_key_overrides_them(
    redis_client: redis.Redis,
) -> None:
    settings = load_settings(
        {"ALERTER_QUEUE_WARN_THRESHOLD": "30", "ALERTER_QUEUE_SHED_THRESHOLD": "60"}
    )
    config = DynamicConfig(redis_client, settings, cache_ttl=0)
    assert config.get("alerter_queue_warn_threshold") == 30
    assert config.get("alerter_queue_shed_threshold") == 60
    config.set("alerter_queue_shed_threshold", 45)
    assert config.get("alerter_queue_shed_threshold") == 45
    config.delete("alerter_queue_shed_threshold")
    assert config.get("alerter_queue_shed_threshold") == 60
    with pytest.raises(ValueError, match="ALERTER_QUEUE_SHED_THRESHOLD"):
        load_settings({"ALERTER_QUEUE_SHED_THRESHOLD": "0"})
