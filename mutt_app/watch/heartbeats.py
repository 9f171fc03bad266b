"""Heartbeats: hosts that must send at least one event every N minutes, and the alerts when not.

A heartbeat (:class:`mutt_app.db.models.Heartbeat`) watches one host, every host a glob matches among
the hosts MUTT has heard from, or every host of a device team. A watched host that sent nothing for
its heartbeat's ``interval_minutes`` is *quiet*: Moog gets one alert, and one clear (same
signature, severity 0) when the host talks again, or when the heartbeat stops watching it (deleted,
deactivated, or changed so that it no longer covers the host).

Last seen. classify records, per batch, each host's latest ``received_at`` in one Redis sorted set
(:data:`LAST_SEEN_KEY`, member the lower-cased host name, score epoch milliseconds) with a single
``ZADD ... GT`` (:func:`record_seen`): one round trip per batch whatever its size, and GT keeps the
latest time when an older batch (a redelivery, a dead letter replayed hours later) arrives after a
newer one. The check reads it with ZMSCORE for named hosts and ZRANGEBYSCORE (quiet for longer than
the shortest interval) for globs; it never reads the event audit. Quiet is judged as of the oldest
batch still waiting for classify (the ledger), not as of now: the last-seen times are complete only
up to then, and a backlog must not look like silent hosts. A named host (or a team's host)
never heard from counts as last seen when the heartbeat last changed, or when the checks started
(:data:`SINCE_KEY`, so that a Redis that lost its data gives every host its interval again rather
than alerting on all of them at once).

Bounded. After each run the check drops from the set the hosts silent for longer than the longest
active heartbeat's interval plus HEARTBEAT_LAST_SEEN_MARGIN_SECONDS (each such host has had its run
that could raise it), and past HEARTBEAT_LAST_SEEN_MAX_HOSTS the longest silent
(:func:`prune_last_seen`, in slices, so that no command holds Redis long).

State. An open alert is a field ``<heartbeat id>:<host>`` of the hash ``QUIET_KEY``, whose JSON
value is its episode: the host's last-seen time when it went quiet, and what the clear needs (name,
handling, team), so a clear can be sent after its heartbeat is gone.

Exactly once. Each run works out the transitions, hands their alerts to the one path to Moog
(:func:`mutt_app.holdback.pipeline.to_moog`: maintenance windows, storm budgets, shedding, the
lanes, the rate limit and the forward task's idempotency key all apply), and only then records
them: HSETNX for a raise, a compare-and-delete script for a clear. Each alert's external_id is derived from its episode
(heartbeat, host, last-seen time), so a run killed between publishing and recording, two runs at
once, or a restarted beat publish the same ids again, and the forward task delivers them once; the
metrics and log lines count only the run whose record took.

Held raises, and clears. A raise the pipeline held (a host in a suppressing window, a glob past
its budget) opens its episode all the same, with ``"forwarded": false`` in its state: the storm
or window summary tells Moog about it, and it is not raised again while the host stays quiet.
When the episode ends it is closed silently (its state removed, a log line): a clear for an
alert Moog never got would be noise. An episode whose raise was forwarded (or dead-lettered by
shedding, which remediation replays to Moog) gets its clear, and that clear is never held: the
pipeline lets a heartbeat's clear in after the hold stages (:mod:`mutt_app.holdback.pipeline`),
so no Moog alert of a heartbeat stays open. A state without the field (written by an older
release, which sent every clear) counts as forwarded.

Cap. One heartbeat has at most HEARTBEAT_MAX_QUIET_HOSTS open alerts (a glob such as ``*`` over a
fleet gone silent would otherwise raise one per host, and keep one state per host): past it, the
longest quiet hosts are alerted and the others counted, per heartbeat, in ``OVER_CAP_KEY``
(rewritten by each run), in ``mutt_heartbeat_quiet_over_cap`` and in a log line. The listings
(:func:`mutt_app.watch.heartbeat_quiet.quiet_hosts`) take a page: no answer grows with the number of hosts.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

import orjson
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from mutt_app import metrics
from mutt_app.db.models import HEARTBEAT_GLOB_CHARS, DeviceTeam, Heartbeat
from mutt_app.forwarding.moog import AGENT, CLEAR_SEVERITY, MANAGER
from mutt_app.holdback.base import Held
from mutt_app.lua.loader import LuaScript
from mutt_app.names import SHED
from mutt_app.runtime import Runtime
from mutt_app.watch.heartbeat_quiet import OVER_CAP_KEY, QUIET_KEY, iso, quiet_keys
from mutt_app.watch.last_seen import LAST_SEEN_KEY, last_seen, prune_last_seen

log = logging.getLogger(__name__)

SINCE_KEY = "mutt:heartbeats:since"
HEARTBEAT_TYPE = "mutt.heartbeat"
QUIET_SEVERITY = 4  # major: something that should talk has stopped
_NAMESPACE = uuid.UUID("3c7f9a12-5e4b-4d81-a6f0-8b2e1d9c7a54")


# KEYS[1] the quiet hash; ARGV field, expected value, field, expected value, ... Deletes each field
# that still holds the value read before the alerts were published; returns 1 or 0 per field.
CLEAR_LUA = LuaScript("mutt_app.watch", "heartbeat_clears")


def is_glob(host: str) -> bool:
    """Whether a heartbeat's ``host`` is a glob over the hosts heard from, not one host name."""
    return any(c in host for c in HEARTBEAT_GLOB_CHARS)


# --- what is watched ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Watch:
    """An active heartbeat as the check sees it."""

    id: int
    name: str
    host: str | None  # lower-cased
    team: str | None
    interval_minutes: int
    handling: str
    team_assignment: str | None
    changed_ms: int

    @classmethod
    def of(cls, row: Heartbeat) -> Watch:
        changed = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
        return cls(
            id=row.id,
            name=row.name,
            host=row.host.lower() if row.host is not None else None,
            team=row.team,
            interval_minutes=row.interval_minutes,
            handling=row.handling,
            team_assignment=row.team_assignment,
            changed_ms=int(changed.timestamp() * 1000),
        )

    @property
    def glob(self) -> bool:
        return self.host is not None and is_glob(self.host)

    def named_hosts(self, by_team: dict[str, list[str]]) -> list[str]:
        """The hosts it names (its host, or its team's hosts); none for a glob."""
        if self.team is not None:
            return by_team.get(self.team, [])
        return [] if self.host is None or self.glob else [self.host]

    def covers(self, host: str, teams: dict[str, str]) -> bool:
        if self.team is not None:
            return teams.get(host) == self.team
        if self.glob:
            return fnmatchcase(host, self.host or "")
        return host == self.host


def load_watches(session: Session) -> tuple[dict[int, Watch], dict[str, str]]:
    """The active heartbeats by id, and the device teams (lower-cased host -> team)."""
    rows = session.scalars(select(Heartbeat).where(Heartbeat.is_active.is_(True))).all()
    teams = {
        hostname.lower(): team
        for hostname, team in session.execute(
            select(DeviceTeam.hostname, DeviceTeam.team_assignment)
        )
    }
    return {row.id: Watch.of(row) for row in rows}, teams


# --- the alerts -----------------------------------------------------------------------------------


def heartbeat_alert(
    state: dict[str, Any], *, cleared: bool = False, why: str = ""
) -> dict[str, Any]:
    """The Moog event of a quiet host's episode (``state`` as :data:`QUIET_KEY` keeps it), or with
    ``cleared`` its clear: same signature, severity clear. external_ids derive from the episode."""
    host = state["host"]
    name = state["name"]
    interval = state["interval_minutes"]
    external_id = str(
        uuid.uuid5(_NAMESPACE, f"{state['episode']}:{'clear' if cleared else 'quiet'}")
    )
    since = iso(state["since"])
    if cleared:
        description = f"{host}: heartbeat '{name}' {why or 'talking again'}"
    elif state["seen"]:
        description = (
            f"{host}: no event for over {interval} min (heartbeat '{name}'); last event at {since}"
        )
    else:
        description = (
            f"{host}: no event for over {interval} min (heartbeat '{name}'); none since {since}"
        )
    return {
        "signature": f"{host}::heartbeat::{state['heartbeat_id']}",
        "source_id": host,
        "external_id": external_id,
        "manager": MANAGER,
        "source": host,
        "class": state["team"],
        "agent": AGENT,
        "agent_location": host,
        "type": HEARTBEAT_TYPE,
        "severity": CLEAR_SEVERITY if cleared else QUIET_SEVERITY,
        "description": description,
        "agent_time": int(datetime.now(UTC).timestamp()),
        "custom_info": {
            "handling": state["handling"],
            "rule_id": None,
            "correlation_id": external_id,
            "team": state["team"],
            "is_dev": False,
            "heartbeat": "cleared" if cleared else "quiet",
            "heartbeat_id": state["heartbeat_id"],
            "heartbeat_name": name,
            "heartbeat_episode": state["episode"],
            "interval_minutes": interval,
            "last_event": since if state["seen"] else None,
        },
    }


# --- the check ------------------------------------------------------------------------------------


@dataclass
class CheckOutcome:
    """What one check did: alerts raised and cleared (recorded by this run), quiet hosts after."""

    raised: list[str] = field(default_factory=list)  # "<heartbeat id>:<host>"
    cleared: list[str] = field(default_factory=list)
    quiet: int = 0  # distinct hosts with an open quiet alert

    def as_dict(self) -> dict[str, int]:
        return {"raised": len(self.raised), "cleared": len(self.cleared), "quiet": self.quiet}


def _now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


Publish = Callable[[list[dict[str, Any]]], Mapping[str, Held] | None]
"""Hands heartbeat alerts to the one path to Moog; returns what it held, by external_id (None:
nothing held)."""


def forwarded(state: dict[str, Any]) -> bool:
    """Whether an episode's raise reached the lanes, so Moog shows it and it needs a clear (a
    state from before the field existed: yes, as older releases assumed)."""
    return bool(state.get("forwarded", True))


def check(runtime: Runtime, publish: Publish) -> CheckOutcome:
    """Raise an alert for each newly quiet host and clear each that talked again (module
    docstring); ``publish`` hands alerts to the one path to Moog
    (:func:`mutt_app.holdback.pipeline.to_moog`) and returns what it held."""
    client = runtime.redis
    now_ms = _now_ms(client)
    # Every event received before the oldest batch still waiting for classify has been classified:
    # last-seen times are complete up to then, so quiet is judged as of then. A classify backlog (or
    # a database outage holding batches) is not a fleet gone silent.
    oldest = client.zrange(runtime.ledger.index, 0, 0, withscores=True)
    judged_ms = min(now_ms, int(oldest[0][1] * 1000)) if oldest else now_ms
    if now_ms - judged_ms > 60_000:
        log.info("heartbeats judged as of %s: classify is %d s behind", iso(judged_ms),
                 (now_ms - judged_ms) // 1000)  # fmt: skip
    client.set(SINCE_KEY, now_ms, nx=True)
    watching_since = int(client.get(SINCE_KEY) or now_ms)
    with runtime.sessions() as session:
        watches, teams = load_watches(session)
    raw_open = {k.decode(): v for k, v in client.hgetall(QUIET_KEY).items()}
    open_states = {key: orjson.loads(raw) for key, raw in raw_open.items()}

    by_team: dict[str, list[str]] = {}
    for host, team in sorted(teams.items()):
        by_team.setdefault(team, []).append(host)
    named = {host for watch in watches.values() for host in watch.named_hosts(by_team)}
    named |= {state["host"] for state in open_states.values()}
    scores = last_seen(client, sorted(named))
    globs = [w for w in watches.values() if w.glob]
    quiet_seen: list[tuple[str, int]] = []
    if globs:
        longest_ago = judged_ms - min(w.interval_minutes for w in globs) * 60_000
        quiet_seen = [
            (member.decode(), int(score))
            for member, score in client.zrangebyscore(
                LAST_SEEN_KEY, "-inf", f"({longest_ago}", withscores=True
            )
        ]
        scores.update(quiet_seen)

    clears: list[tuple[str, dict[str, Any], str]] = []
    for key, state in open_states.items():
        watch = watches.get(state["heartbeat_id"])
        current = scores.get(state["host"])
        if watch is None or not watch.covers(state["host"], teams):
            clears.append((key, state, "no longer watches this host"))
        elif current is not None and current > state["since"]:
            clears.append((key, state, f"talking again (event at {iso(current)})"))
    still_open = open_states.keys() - {key for key, _, _ in clears}

    open_per_watch: dict[int, int] = {}
    for key in still_open:
        watch_id = open_states[key]["heartbeat_id"]
        open_per_watch[watch_id] = open_per_watch.get(watch_id, 0) + 1
    cap = runtime.settings.heartbeat_max_quiet_hosts
    over_cap: dict[int, int] = {}
    raises: list[tuple[str, dict[str, Any]]] = []
    for watch in watches.values():
        threshold = judged_ms - watch.interval_minutes * 60_000
        if watch.glob:
            candidates = [
                (host, since, True)
                for host, since in quiet_seen
                if since < threshold and fnmatchcase(host, watch.host or "")
            ]
        else:
            baseline = max(watch.changed_ms, watching_since)
            candidates = []
            for host in watch.named_hosts(by_team):
                seen = scores.get(host)
                since = seen if seen is not None else baseline
                if since < threshold:
                    candidates.append((host, since, seen is not None))
        new = [c for c in candidates if f"{watch.id}:{c[0]}" not in still_open]
        room = max(0, cap - open_per_watch.get(watch.id, 0))
        if len(new) > room:
            new.sort(key=lambda c: (c[1], c[0]))  # the longest quiet are alerted
            over_cap[watch.id] = len(new) - room
            del new[room:]
        for host, since, seen in new:
            key = f"{watch.id}:{host}"
            raises.append((key, _episode(watch, host, since, seen, teams, runtime, now_ms)))

    # Only a raise Moog got is cleared; the others close silently (module docstring).
    alerts = [
        heartbeat_alert(state, cleared=True, why=why)
        for _, state, why in clears
        if forwarded(state)
    ]
    raised_alerts = [heartbeat_alert(state) for _, state in raises]
    alerts += raised_alerts
    held = (publish(alerts) if alerts else None) or {}
    for (_, state), alert in zip(raises, raised_alerts, strict=True):
        why = held.get(alert["external_id"])
        # A dead-lettered raise is replayed to Moog later: it needs its clear.
        state["forwarded"] = why is None or why.reason == SHED
    outcome = _record(client, raw_open, clears, raises)
    longest_ms = max((w.interval_minutes for w in watches.values()), default=0) * 60_000
    settings = runtime.settings
    margin_ms = settings.heartbeat_last_seen_margin_seconds * 1000
    prune_last_seen(
        client, judged_ms - longest_ms - margin_ms, settings.heartbeat_last_seen_max_hosts
    )
    metrics.LAST_SEEN_HOSTS.set(client.zcard(LAST_SEEN_KEY))
    outcome.quiet = len({key.split(":", 1)[1] for key in quiet_keys(client)})
    _observe(outcome, clears, raises)
    _record_over_cap(client, over_cap, watches, cap)
    return outcome


def _record_over_cap(
    client: redis.Redis, over_cap: dict[int, int], watches: dict[int, Watch], cap: int
) -> None:
    """Keep this run's count of quiet hosts past each heartbeat's cap (:data:`OVER_CAP_KEY`),
    in the gauge, and in a log line per heartbeat."""
    pipe = client.pipeline(transaction=True)
    pipe.delete(OVER_CAP_KEY)
    if over_cap:
        pipe.hset(OVER_CAP_KEY, mapping={str(k): v for k, v in over_cap.items()})
    pipe.execute()
    for watch_id, extra in over_cap.items():
        log.warning(
            "heartbeat %r: %d more quiet hosts not alerted: it has its cap of %d open"
            " (HEARTBEAT_MAX_QUIET_HOSTS)",
            watches[watch_id].name,
            extra,
            cap,
        )
    metrics.HEARTBEAT_QUIET_OVER_CAP.set(sum(over_cap.values()))


def _episode(
    watch: Watch,
    host: str,
    since: int,
    seen: bool,
    teams: dict[str, str],
    runtime: Runtime,
    now_ms: int,
) -> dict[str, Any]:
    return {
        "episode": str(uuid.uuid5(_NAMESPACE, f"{watch.id}:{host}:{since}")),
        "heartbeat_id": watch.id,
        "name": watch.name,
        "host": host,
        "since": since,
        "seen": seen,
        "interval_minutes": watch.interval_minutes,
        "handling": watch.handling,
        "team": watch.team_assignment
        or teams.get(host)
        or watch.team
        or runtime.settings.unhandled_default_team,
        "raised_at": now_ms,
    }


def _record(
    client: redis.Redis,
    raw_open: dict[str, bytes],
    clears: list[tuple[str, dict[str, Any], str]],
    raises: list[tuple[str, dict[str, Any]]],
) -> CheckOutcome:
    """Record the published transitions: clears first (a host that talked and went quiet again
    in one interval gets its new episode in the same run)."""
    outcome = CheckOutcome()
    if clears:
        args: list[Any] = []
        for key, _, _ in clears:
            args += [key, raw_open[key]]
        done = CLEAR_LUA.register(client)(keys=[QUIET_KEY], args=args)
        outcome.cleared = [key for (key, _, _), ok in zip(clears, done, strict=True) if ok]
    if raises:
        pipe = client.pipeline(transaction=False)
        for key, state in raises:
            pipe.hsetnx(QUIET_KEY, key, orjson.dumps(state))
        done = pipe.execute()
        outcome.raised = [key for (key, _), ok in zip(raises, done, strict=True) if ok]
    return outcome


def _observe(
    outcome: CheckOutcome,
    clears: list[tuple[str, dict[str, Any], str]],
    raises: list[tuple[str, dict[str, Any]]],
) -> None:
    raised, cleared = set(outcome.raised), set(outcome.cleared)
    for key, state, why in clears:
        if key in cleared and forwarded(state):
            log.info("heartbeat %r: %s %s", state["name"], state["host"], why)
        elif key in cleared:
            log.info(
                "heartbeat %r: %s %s; closed without a clear (its alert was held back)",
                state["name"],
                state["host"],
                why,
            )
    for key, state in raises:
        if key in raised:
            log.warning(
                "heartbeat %r: %s quiet for over %d min (last event %s)",
                state["name"],
                state["host"],
                state["interval_minutes"],
                iso(state["since"]) if state["seen"] else "never",
            )
    metrics.HEARTBEAT_ALERTS.labels("raised").inc(len(raised))
    # Counted as cleared: only the clears sent (a held raise's episode closes with a log line).
    sent = {key for key, state, _ in clears if key in cleared and forwarded(state)}
    metrics.HEARTBEAT_ALERTS.labels("cleared").inc(len(sent))
    metrics.HEARTBEAT_QUIET_HOSTS.set(outcome.quiet)
