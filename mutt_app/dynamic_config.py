"""Operational settings that change at runtime, without a restart.

Values live in Redis under ``mutt:config:<key>``; a change is announced on ``mutt:config:updates``.
Each process keeps a 5-second local cache, so a hot path reads Redis at most every few seconds and a
change reaches every process within that time. A key that was never set falls back to the process's settings (the environment).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

from mutt_app.config import Settings

log = logging.getLogger(__name__)

PREFIX = "mutt:config"
# The largest count a setting takes: bounded, so that any value stored is one JSON (and the API's
# 64-bit integers) can carry.
MAX_COUNT = 2**31 - 1
UPDATES_CHANNEL = f"{PREFIX}:updates"


@dataclass(frozen=True, slots=True)
class Key:
    """A dynamic setting: its type, bounds, and the static setting it overrides (if any)."""

    name: str
    kind: type
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    setting: str | None = None
    help: str = ""

    def parse(self, raw: str | bytes | int | float) -> Any:
        """``raw`` as this key's type, or ValueError with a message naming the key."""
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            value = self.kind(text)
        except ValueError:
            raise ValueError(f"{self.name} must be {self.kind.__name__}, got {text!r}") from None
        if self.choices and value not in self.choices:
            raise ValueError(f"{self.name} must be one of {', '.join(self.choices)}, got {text!r}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{self.name} must be >= {self.minimum:g}, got {text}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{self.name} must be <= {self.maximum:g}, got {text}")
        return value


KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        Key("max_ingest_queue_size", int, 1_000_000, 1, MAX_COUNT, setting="max_ingest_queue_size",
            help="classify queue length above which ingest answers 503"),
        Key("alerter_queue_warn_threshold", int, 1000, 1, MAX_COUNT,
            setting="alerter_queue_warn_threshold", help="ticket lane (mutt.forward) length, in forward tasks, at which classify warns"),
        Key("alerter_queue_shed_threshold", int, 2000, 1, MAX_COUNT,
            setting="alerter_queue_shed_threshold", help="ticket lane length at which classify sheds Ticket_only alerts (never pages)"),
        Key("alerter_shed_mode", str, "dlq", choices=("dlq", "defer"),
            help="shed alerts become dead letters (replayed later), or are published with a delay"),
        Key("alerter_defer_sleep_ms", int, 250, 0, 60_000,
            help="delay in ms of an alert shed in defer mode"),
        Key("moog_rate_limit", int, 50, 1, 100_000, setting="moog_rate_limit",
            help="Moog requests per period, cluster-wide"),
        Key("moog_rate_period", float, 1.0, 0.01, 3600, setting="moog_rate_period",
            help="the rate limit's window in seconds"),
        Key("moog_page_reserved_share", float, 0.2, 0, 0.9, setting="moog_page_reserved_share",
            help="share of the rate limit only pages may use"),
        Key("moog_batch_size", int, 50, 1, 1000, setting="moog_batch_size",
            help="most alerts per forward task and per request to Moog"),
        Key("moog_circuit_breaker_threshold", int, 5, 1, 1000,
            setting="moog_circuit_breaker_threshold", help="consecutive failures that open it"),
        Key("moog_circuit_breaker_timeout", int, 60, 1, 3600,
            setting="moog_circuit_breaker_timeout", help="seconds it stays open"),
        Key("dedup_window_seconds", int, 60, 0, 86_400, setting="dedup_window_seconds",
            help="seconds repeats of an alert are counted, not forwarded (0: off)"),
        Key("storm_budget_per_device", int, 100, 0, 1_000_000, setting="storm_budget_per_device",
            help="alerts per device and lane reaching Moog per storm window (0: off)"),
        Key("storm_budget_per_rule", int, 500, 0, 1_000_000, setting="storm_budget_per_rule",
            help="alerts per rule and lane reaching Moog per storm window (0: off)"),
        Key("storm_window_seconds", int, 60, 1, 86_400, setting="storm_window_seconds",
            help="the storm budgets' window in seconds; one summary per window that held alerts"),
        Key("flap_transitions", int, 5, 0, 1000, setting="flap_transitions",
            help="problem/clear transitions of a host's rule pair that make it flap (0: off)"),
        Key("flap_window_seconds", int, 600, 1, 86_400, setting="flap_window_seconds",
            help="seconds those transitions must fall within"),
        Key("flap_quiet_seconds", int, 600, 1, 86_400, setting="flap_quiet_seconds",
            help="seconds a flapping pair must stay quiet before 'flapping ended'"),
        Key("slo_window_hours", int, 24, 1, 720, help="SLO evaluation window"),
        Key("slo_ingest_success_target", float, 0.995, 0, 1, help="ingest availability target"),
        Key("slo_forward_success_target", float, 0.99, 0, 1, help="forward availability target"),
    )
}  # fmt: skip


class DynamicConfig:
    """Typed runtime settings backed by Redis, with a short local cache."""

    def __init__(self, client: redis.Redis, settings: Settings, cache_ttl: float = 5.0) -> None:
        self.client = client
        self.settings = settings
        self.cache_ttl = cache_ttl
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def default(self, name: str) -> Any:
        """The value when Redis has none: the static setting, else the key's own default."""
        key = _key(name)
        return getattr(self.settings, key.setting) if key.setting else key.default

    def get(self, name: str) -> Any:
        """The current value (cached up to ``cache_ttl`` seconds). Redis errors fall back safely."""
        key = _key(name)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and now - cached[0] < self.cache_ttl:
            return cached[1]
        try:
            raw = self.client.get(f"{PREFIX}:{name}")
            value = key.parse(raw) if raw is not None else self.default(name)
        except redis.RedisError:
            log.warning("dynamic config %s: Redis unreachable, using the last known value", name)
            return cached[1] if cached is not None else self.default(name)
        except ValueError as exc:
            log.error("dynamic config %s holds a bad value (%s); using the default", name, exc)
            value = self.default(name)
        with self._lock:
            self._cache[name] = (now, value)
        return value

    def set(self, name: str, raw: str | int | float, *, notify: bool = True) -> Any:
        """Validate and store a value; announce it unless ``notify`` is False. Returns the value."""
        value = _key(name).parse(raw)
        self.client.set(f"{PREFIX}:{name}", str(value))
        self._forget(name)
        if notify:
            self.client.publish(UPDATES_CHANNEL, name)
        return value

    def delete(self, name: str) -> None:
        """Drop the override: the key falls back to its default."""
        _key(name)
        self.client.delete(f"{PREFIX}:{name}")
        self._forget(name)
        self.client.publish(UPDATES_CHANNEL, name)

    def get_all(self) -> dict[str, dict[str, Any]]:
        """Every known key: its value, whether it is overridden in Redis, and its help."""
        names = list(KEYS)
        raws = self.client.mget([f"{PREFIX}:{n}" for n in names])
        result = {}
        for name, raw in zip(names, raws, strict=True):
            key = KEYS[name]
            try:
                value = key.parse(raw) if raw is not None else self.default(name)
            except ValueError:
                value = self.default(name)
            result[name] = {"value": value, "overridden": raw is not None, "help": key.help}
        return result

    def forget_all(self) -> int:
        """Drop every cached value, so the next read of each comes from Redis; how many were cached."""
        with self._lock:
            count = len(self._cache)
            self._cache.clear()
        return count

    def _forget(self, name: str) -> None:
        with self._lock:
            self._cache.pop(name, None)


def parse_value(name: str, raw: str | bytes | int | float) -> Any:
    """``raw`` as the value of setting ``name``; ValueError naming the problem (or unknown name)."""
    return _key(name).parse(raw)


def _key(name: str) -> Key:
    try:
        return KEYS[name]
    except KeyError:
        raise ValueError(
            f"unknown config key {name!r} (known: {', '.join(sorted(KEYS))})"
        ) from None
