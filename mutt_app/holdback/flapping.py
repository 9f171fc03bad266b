"""Flapping: a problem/clear pair that keeps changing state is one alert, not a stream of them.

A rule may name the rule it clears (``alert_rules.clears_rule_id``: LINK-UP clears LINK-DOWN).
For each host and such pair, every forwardable event of either rule is a state: problem or clear.
In a chain (C clears B, B clears A) each link is a pair, and an event of the middle rule B is a
state of both: the clear of pair A and the problem of pair B (:mod:`mutt_app.rules.clearing`;
loops are refused when rules are written).
A transition is a state different from the pair's previous one. FLAP_TRANSITIONS transitions within
FLAP_WINDOW_SECONDS (dynamic keys; defaults 5 within 600 s, and 0 transitions turns detection off)
start an episode: Moog gets one "flapping" alert, and every further event of the pair is held
(audited with ``held_reason='flapping'``) until the pair stays quiet for FLAP_QUIET_SECONDS (default
600); then the flush job sends one "flapping ended" alert with the counts, which clears the
flapping alert in Moog (same signature, severity clear). The next event starts afresh.

Defaults: five transitions in ten minutes is more than a link that bounces once or twice when
someone works on it, and well below a port flapping every few seconds; ten quiet minutes before the
end keeps a port that pauses between bursts in one episode.

Flap detection sees the events deduplication held too (a LINK-DOWN repeated within the dedup
window is still a state change after a LINK-UP), but such an event keeps its first reason,
``duplicate``: every event is audited with one reason.

The state is in Redis, one Lua script per batch (:class:`FlapDetector`),
atomic and idempotent per batch like deduplication's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from mutt_app import metrics
from mutt_app.forwarding.moog import flapping_alert
from mutt_app.holdback.base import Candidate, Held, Publish, Verdicts, batch_digest
from mutt_app.holdback.closing import ClosingWindows
from mutt_app.holdback.dedup import DUPLICATE
from mutt_app.lua.loader import LuaScript
from mutt_app.names import FLAPPING
from mutt_app.rules.snapshot import RuleSnapshot
from mutt_app.runtime import Runtime

log = logging.getLogger(__name__)

FLAPPING_LUA = LuaScript("mutt_app.holdback", "flapping")

PREFIX = "mutt:flap"


def detector(runtime: Runtime) -> FlapDetector:
    """The shared flap state, one per Runtime; a batch's answer is remembered as long as dedup's."""
    return runtime.component(_build_detector)


def _build_detector(runtime: Runtime) -> FlapDetector:
    # Bound to runtime.redis: Runtime.reset forgets the client and its components together.
    return FlapDetector(runtime.redis, PREFIX, 2 * runtime.settings.ledger_reconcile_after)


class Flapping:
    """The flapping stage (module docstring). It watches the duplicates too."""

    name = FLAPPING
    watches_held: frozenset[str] = frozenset({DUPLICATE})
    events_only = True

    def hold(
        self,
        runtime: Runtime,
        snapshot: RuleSnapshot,
        candidates: Sequence[Candidate],
        held: Mapping[str, Held],
    ) -> Verdicts:
        """Watch the pairs' alerts among ``candidates`` (one batch, in order).

        Holds as flapping the events of an episode (none already ``held``), and raises the
        flapping alerts of this batch, by the id of the candidate that raised each.
        """
        config = runtime.dynamic_config
        transitions = config.get("flap_transitions")
        paired = [c for c in candidates if c.rule_id in snapshot.flap_pairs]
        if transitions <= 0 or not paired:
            return Verdicts()
        events = []
        owners: list[Candidate] = []  # the candidate of each transition (a middle rule's: two)
        alerts: dict[str, bytes] = {}
        for candidate in paired:
            for problem_rule, is_problem in snapshot.flap_pairs[candidate.rule_id]:  # type: ignore[index]
                pair = f"{candidate.hostname.lower()}:{problem_rule}"
                events.append(Transition(pair, is_problem))
                owners.append(candidate)
                if pair not in alerts:
                    alert = candidate.alert
                    info = {**alert.get("custom_info", {}), "flap_problem_rule_id": problem_rule}
                    alerts[pair] = orjson.dumps({**alert, "custom_info": info})
        within = config.get("flap_window_seconds")
        found = detector(runtime).observe(
            batch_digest(paired),
            events,
            alerts,
            transitions=transitions,
            within_seconds=within,
            quiet_seconds=config.get("flap_quiet_seconds"),
        )
        verdicts = Verdicts()
        for candidate, flap, verdict in zip(owners, events, found, strict=True):
            if verdict.held and candidate.id not in held:
                verdicts.held[candidate.id] = Held(FLAPPING)
            if verdict.raised is not None:
                # A middle rule's event may raise on both its pairs at once: each alert is kept.
                key = (
                    candidate.id
                    if candidate.id not in verdicts.raised
                    else f"{candidate.id}:{flap.pair}"
                )
                alert = flapping_alert(
                    orjson.loads(alerts[flap.pair]),
                    episode=verdict.raised,
                    transitions=verdict.transitions,
                    within=within,
                )
                verdicts.raised[key] = Candidate.of_alert(alert, FLAPPING)
                log.warning("flapping: %s (%d transitions)", flap.pair, verdict.transitions)
        return verdicts

    def flush(self, runtime: Runtime, publish: Publish) -> int:
        """Send one "flapping ended" alert per episode that went quiet; returns how many."""
        sent = detector(runtime).flush(ended, publish)
        if sent:
            metrics.FLAPPING_ALERTS.labels("ended").inc(len(sent))
            log.warning("flapping: %d episodes ended", len(sent))
        return len(sent)


def _moment(epoch_ms: bytes) -> str:
    return datetime.fromtimestamp(int(epoch_ms) / 1000, UTC).isoformat()


def open_pairs(client: redis.Redis, limit: int = 10) -> tuple[int, list[dict[str, Any]]]:
    """The pairs flapping now: how many, and the ``limit`` with the most transitions.

    A pair is flapping while its episode is open and its quiet time not over (it is in the due set
    scored by ``closes`` later than now); one whose quiet time just ended is left out even before
    the flush job closes it. Each: ``hostname``, ``problem_rule_id``, ``transitions`` (since the
    episode started, the ones that started it included), ``held`` (events held), ``started`` and
    ``last_event`` (ISO timestamps). Read only: the state is the detector's, read as it keeps it.
    """
    state = FlapDetector(client, PREFIX, 0)
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    keys = client.zrangebyscore(state.due_key, f"({now_ms}", "+inf")
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hmget(key, "id", "flips", "count", "started", "last")
    found = []
    for key, (episode, flips, count, started, last) in zip(keys, pipe.execute(), strict=True):
        if episode is None:  # closed between the two reads
            continue
        host, _, rule = key.decode().removeprefix(state.pair_key("")).rpartition(":")
        found.append(
            {
                "hostname": host,
                "problem_rule_id": int(rule),
                "transitions": int(flips),
                "held": int(count),
                "started": _moment(started),
                "last_event": _moment(last),
            }
        )
    found.sort(key=lambda p: (-p["transitions"], -p["held"], p["hostname"], p["problem_rule_id"]))
    return len(found), found[:limit]


def ended(episode: str, data: dict[str, Any]) -> dict[str, Any]:
    """The "flapping ended" alert of an episode that went quiet (its Redis fields)."""
    return flapping_alert(
        orjson.loads(data["alert"]),
        episode=episode,
        transitions=int(data["flips"]),
        within=int(data["window"]),
        ended=True,
        held=int(data["count"]),
        duration=(int(data["last"]) - int(data["started"])) // 1000,
    )


@dataclass(frozen=True, slots=True)
class Transition:
    """One event of a problem/clear pair as the flap detector sees it."""

    pair: str  # host and problem rule, e.g. "core-sw-01:7"
    problem: bool  # True: the problem rule matched; False: the rule that clears it


@dataclass(frozen=True, slots=True)
class FlapVerdict:
    """What to do with one event: forward it, hold it, or hold it and raise the flapping alert."""

    held: bool
    raised: str | None = None  # the new episode's id
    transitions: int = 0  # at the raise: the transitions within the window


class FlapDetector(ClosingWindows):
    """Problem/clear pairs per host: N transitions within M seconds make a flapping episode, which
    holds every event of the pair until Q seconds pass without one; then the flush sends its end.
    """

    def __init__(self, client: redis.Redis, prefix: str, remember_seconds: int) -> None:
        super().__init__(client, prefix, remember_seconds)
        self.script = FLAPPING_LUA.register(client)

    def pair_key(self, pair: str) -> str:
        return f"{self.prefix}:pair:{pair}"

    def observe(
        self,
        batch_key: str,
        events: Sequence[Transition],
        alerts: Mapping[str, bytes],
        *,
        transitions: int,
        within_seconds: int,
        quiet_seconds: int,
    ) -> list[FlapVerdict]:
        """The verdict for each of ``events`` (in order); ``alerts`` gives each pair's alert (JSON),
        kept in an episode for its end."""
        if not events:
            return []
        pairs: list[str] = []
        index: dict[str, int] = {}
        for event in events:
            if event.pair not in index:
                pairs.append(event.pair)
                index[event.pair] = len(pairs)
        keys = self.batch_keys(batch_key, (self.pair_key(p) for p in pairs))
        args: list[Any] = [self.remember, transitions, within_seconds, quiet_seconds, len(pairs)]
        args += [alerts[p] for p in pairs]
        for event in events:
            args += [index[event.pair], "p" if event.problem else "c"]
        verdicts = []
        for reply in self.script(keys=keys, args=args):
            text = reply.decode() if isinstance(reply, bytes) else reply
            if text.startswith("r:"):
                _, count, episode = text.split(":", 2)
                verdicts.append(FlapVerdict(True, episode, int(count)))
            else:
                verdicts.append(FlapVerdict(text == "h"))
        return verdicts
