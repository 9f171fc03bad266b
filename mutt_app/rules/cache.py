"""Each worker's compiled copy of the rules, reloaded within seconds of a change.

Every change to rules, development hosts, device teams or maintenance windows increments
``mutt:rules:version`` in Redis. Workers read that key once per task (one GET per batch of events)
and recompile when it moved, and also every CACHE_RELOAD_INTERVAL seconds in case a change bypassed
the version (a manual SQL edit). The maintenance windows are not the rules' own: they are reloaded
by :class:`mutt_app.holdback.window_cache.WindowCache` each time this cache loads a new snapshot.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from sqlalchemy.orm import Session, sessionmaker

from mutt_app import metrics
from mutt_app.config import Settings
from mutt_app.rules.snapshot import RuleSnapshot, load_snapshot
from mutt_app.runtime import Runtime

log = logging.getLogger(__name__)

VERSION_KEY = "mutt:rules:version"
UPDATES_CHANNEL = "mutt:rules:updates"


def bump_rules_version(client: redis.Redis) -> int:
    """Tell every worker the rules changed; returns the new version."""
    version = int(client.incr(VERSION_KEY))
    client.publish(UPDATES_CHANNEL, str(version))
    return version


class RuleCache:
    """The current :class:`RuleSnapshot` of one process (``runtime.component(RuleCache.of)``)."""

    def __init__(
        self, sessions: sessionmaker[Session], client: redis.Redis, settings: Settings
    ) -> None:
        self.sessions = sessions
        self.client = client
        self.reload_interval = settings.cache_reload_interval
        self._snapshot: RuleSnapshot | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    @classmethod
    def of(cls, runtime: Runtime) -> RuleCache:
        """The rule cache of ``runtime`` (a Runtime component)."""
        return cls(runtime.sessions, runtime.redis, runtime.settings)

    def reload(self) -> RuleSnapshot:
        """Load the rules from the database now, whatever the version says (SIGHUP, a manual edit)."""
        with self._lock:
            self._loaded_at = float("-inf")
        return self.current()

    def current(self) -> RuleSnapshot:
        """The snapshot for the rules version in Redis, recompiled if it changed.

        If reloading fails but an older snapshot exists, the older one is used (and the failure
        counted): classification goes on with slightly stale rules rather than stopping.
        """
        raw = self.client.get(VERSION_KEY)
        version = raw.decode() if raw else "0"
        snapshot = self._snapshot
        fresh = time.monotonic() - self._loaded_at < self.reload_interval
        if snapshot is not None and snapshot.version == version and fresh:
            return snapshot
        with self._lock:
            if self._snapshot is not snapshot:  # another thread reloaded meanwhile
                return self._snapshot  # type: ignore[return-value]
            try:
                with self.sessions() as session:
                    snapshot = load_snapshot(session, version)
            except Exception:
                metrics.RULE_RELOAD_FAILURES.inc()
                if self._snapshot is None:
                    raise
                log.exception(
                    "rule reload failed; keeping rules version %s", self._snapshot.version
                )
                self._loaded_at = time.monotonic()
                return self._snapshot
            self._snapshot, self._loaded_at = snapshot, time.monotonic()
            metrics.RULES_CACHED.set(len(snapshot.ruleset))
            metrics.RULES_SKIPPED.set(len(snapshot.ruleset.errors))
            metrics.DEDUP_KEYS_IGNORED.set(len(snapshot.dedup_key_errors))
            metrics.DEV_HOSTS_CACHED.set(len(snapshot.dev_hosts))
            metrics.TEAMS_CACHED.set(len(snapshot.device_teams))
            log.info("loaded rules version %s: %d active rules", version, len(snapshot.ruleset))
            return snapshot
