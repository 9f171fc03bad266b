"""Each worker's compiled copy of the rules, reloaded within seconds of a change.

Every change to rules, development hosts, device teams or maintenance windows increments
``mutt:rules:version`` in Redis. Workers read that key once per task (one GET per batch of events)
and recompile when it moved, and also every CACHE_RELOAD_INTERVAL seconds in case a change bypassed
the version (a manual SQL edit).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mutt_app import metrics
from mutt_app.config import Settings
from mutt_app.db.models import AlertRule, DevelopmentHost, DeviceTeam, MaintenanceWindow
from mutt_app.rules.engine import Rule, RuleSnapshot, compile_rules
from mutt_app.runtime import Runtime

log = logging.getLogger(__name__)

VERSION_KEY = "mutt:rules:version"
UPDATES_CHANNEL = "mutt:rules:updates"


def bump_rules_version(client: redis.Redis) -> int:
    """Tell every worker the rules changed; returns the new version."""
    version = int(client.incr(VERSION_KEY))
    client.publish(UPDATES_CHANNEL, str(version))
    return version


def load_snapshot(
    session: Session, version: str, rows: Sequence[AlertRule] | None = None
) -> RuleSnapshot:
    """Read the active rules, dev hosts, device teams and maintenance windows; compile them.

    ``rows``: the active rules to compile instead of those in the database (a draft's, for the
    backtest); the development hosts, device teams and windows are still the database's.
    """
    # Imported here: maintenance_windows uses dedup, which imports the runtime that imports us.
    from mutt_app.holdback.windows import compile_windows

    if rows is None:
        rows = session.scalars(select(AlertRule).where(AlertRule.is_active.is_(True))).all()
    rules = [
        Rule(
            id=row.id,
            match_type=row.match_type,
            match_string=row.match_string,
            trap_oid=row.trap_oid,
            syslog_severity=row.syslog_severity,
            priority=row.priority,
            prod_handling=row.prod_handling,
            dev_handling=row.dev_handling,
            team_assignment=row.team_assignment,
        )
        for row in rows
    ]
    dev_hosts = frozenset(session.scalars(select(DevelopmentHost.hostname)))
    teams = {
        hostname: team
        for hostname, team in session.execute(
            select(DeviceTeam.hostname, DeviceTeam.team_assignment)
        )
    }
    ruleset = compile_rules(rules)
    for rule_id, error in ruleset.errors:
        log.error("rule %s skipped: %s", rule_id, error)
    windows = {
        row.id: row.dedup_window_seconds for row in rows if row.dedup_window_seconds is not None
    }
    return RuleSnapshot(
        ruleset=ruleset,
        dev_hosts=dev_hosts,
        device_teams=teams,
        version=version,
        dedup_windows=windows,
        flap_pairs=flap_pairs(rows),
        maintenance_windows=compile_windows(session.scalars(select(MaintenanceWindow))),
    )


def flap_pairs(rows: Sequence[AlertRule]) -> dict[int, tuple[int, bool]]:
    """Rule id -> (problem rule id, is the problem rule) for each active clear rule and its problem.

    A rule that both clears one rule and is cleared by another keeps its role as a problem rule
    (its own pair); a clear rule naming an inactive or missing rule makes no pair.
    """
    active = {row.id for row in rows}
    pairs: dict[int, tuple[int, bool]] = {}
    for row in rows:
        if row.clears_rule_id is not None and row.clears_rule_id in active:
            pairs[row.clears_rule_id] = (row.clears_rule_id, True)
    for row in rows:
        problem = row.clears_rule_id
        if problem is not None and problem in active and row.id not in pairs:
            pairs[row.id] = (problem, False)
    return pairs


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
            metrics.DEV_HOSTS_CACHED.set(len(snapshot.dev_hosts))
            metrics.TEAMS_CACHED.set(len(snapshot.device_teams))
            log.info("loaded rules version %s: %d active rules", version, len(snapshot.ruleset))
            return snapshot
