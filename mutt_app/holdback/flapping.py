"""Flapping: a problem/clear pair that keeps changing state is one alert, not a stream of them.

A rule may name the rule it clears (``alert_rules.clears_rule_id``: LINK-UP clears LINK-DOWN).
For each host and such pair, every forwardable event of either rule is a state: problem or clear.
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

The state is in Redis, one Lua script per batch (:class:`mutt_app.holdback.scripts.FlapDetector`),
atomic and idempotent per batch like deduplication's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from mutt_app import metrics
from mutt_app.forwarding.moog import flapping_alert
from mutt_app.holdback.dedup import Candidate, Held, batch_digest
from mutt_app.holdback.scripts import FlapDetector, Transition
from mutt_app.names import FLAPPING
from mutt_app.rules.engine import RuleSnapshot
from mutt_app.runtime import Runtime

log = logging.getLogger(__name__)

PREFIX = "mutt:flap"


def detector(runtime: Runtime) -> FlapDetector:
    """The shared flap state; a batch's answer is remembered as long as dedup's."""
    return FlapDetector(runtime.redis, PREFIX, 2 * runtime.settings.reconcile_after)


def hold_flapping(
    runtime: Runtime,
    snapshot: RuleSnapshot,
    candidates: Sequence[Candidate],
    already_held: Collection[str],
) -> tuple[dict[str, Held], dict[str, dict[str, Any]]]:
    """Watch the pairs' events among ``candidates`` (one batch, in order).

    Returns the events to hold as flapping (none of ``already_held``) and the flapping alerts
    raised by this batch, by the correlation_id of the event that raised each.
    """
    config = runtime.dynamic_config
    transitions = config.get("flap_transitions")
    paired = [c for c in candidates if c[1].rule_id in snapshot.flap_pairs]
    if transitions <= 0 or not paired:
        return {}, {}
    events = []
    alerts: dict[str, bytes] = {}
    for event, decision, alert in paired:
        problem_rule, is_problem = snapshot.flap_pairs[decision.rule_id]  # type: ignore[index]
        pair = f"{event.hostname.lower()}:{problem_rule}"
        events.append(Transition(pair, is_problem))
        if pair not in alerts:
            info = {**alert.get("custom_info", {}), "flap_problem_rule_id": problem_rule}
            alerts[pair] = orjson.dumps({**alert, "custom_info": info})
    within = config.get("flap_window_seconds")
    verdicts = detector(runtime).observe(
        batch_digest(paired),
        events,
        alerts,
        transitions=transitions,
        within_seconds=within,
        quiet_seconds=config.get("flap_quiet_seconds"),
    )
    held: dict[str, Held] = {}
    raised: dict[str, dict[str, Any]] = {}
    for (event, _, _), flap, verdict in zip(paired, events, verdicts, strict=True):
        if verdict.held and event.correlation_id not in already_held:
            held[event.correlation_id] = Held(FLAPPING)
        if verdict.raised is not None:
            raised[event.correlation_id] = flapping_alert(
                orjson.loads(alerts[flap.pair]),
                episode=verdict.raised,
                transitions=verdict.transitions,
                within=within,
            )
            log.warning("flapping: %s (%d transitions)", flap.pair, verdict.transitions)
    return held, raised


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


def flush(runtime: Runtime, publish: Callable[[list[dict[str, Any]]], None]) -> int:
    """Send one "flapping ended" alert per episode that went quiet; returns how many."""
    sent = detector(runtime).flush(ended, publish)
    if sent:
        metrics.FLAPPING_ALERTS.labels("ended").inc(len(sent))
        log.warning("flapping: %d episodes ended", len(sent))
    return len(sent)
