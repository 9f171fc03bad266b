"""Unhandled events: the meta-alert for a host whose events no rule matches, and the templates of
those events, grouped, with a rule to match each.

Meta-alerts (:func:`raise_meta_alerts`): classify counts each host's unmatched events in Redis
(one atomic counter per host, UNHANDLED_EXPIRY_SECONDS long); the batch that takes a host to
UNHANDLED_THRESHOLD raises one meta-alert for it (:func:`mutt_app.forwarding.moog.unhandled_meta_alert`).

Events that differ only in numbers, addresses, ids and times are one template: the grouping key is
:func:`mutt_app.events.fingerprint.template`, which masks addresses and numbered identities too, so
the BGP peers going down on several routers show as one line and suggest one rule. Deduplication
keeps those apart (each peer is its own incident: the incident template); grouping here asks what
one rule should match, not which alerts repeat one incident.

Design: counted from the event audit when asked, not in Redis at classify time. Every unmatched
event is already audited with ``matched_rule_id IS NULL``; migration 0010's partial index
``idx_event_audit_unmatched`` holds the timestamps of those rows only, so the query reads the newest
unmatched events of the window and nothing else (PostgreSQL also prunes to the window's monthly
partitions). The classify path pays nothing: no template to compute per event and no extra Redis
round trip per batch; the index costs one entry per unmatched row only. The cost moves to the
reader, and is bounded: at most UNHANDLED_TEMPLATES_MAX_ROWS rows (the newest) are read, under the
dashboard's statement timeout, and an answer that hit the cap says so (``truncated``) rather than
presenting a sample as the whole. The dashboard keeps its answer for TEMPLATES_REFRESH seconds. A
Redis counter would have been exact for any volume but costs every classify task, survives no
Redis loss, and double-counts nothing only with extra bookkeeping that the audit already does.

:func:`suggested_rule` turns a template into the fields of a rule that matches its events: the
literal parts, escaped, with each masked part replaced by a pattern that matches what the mask hid.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mutt_app import metrics
from mutt_app.db.models import EventAuditLog
from mutt_app.events.fingerprint import template
from mutt_app.events.schema import Event
from mutt_app.forwarding.moog import unhandled_meta_alert
from mutt_app.holdback.base import Publish
from mutt_app.rules.validate import MAX_PATTERN_CHARS, RuleError, validate_rule_fields
from mutt_app.runtime import Runtime
from mutt_app.watch.queries import bounded, in_window, timed_query
from mutt_app.watch.unhandled_hosts import UnhandledCounter

log = logging.getLogger(__name__)

MAX_HOURS = 168
"""The longest window one answer covers (a week)."""
TOP_HOSTS = 5
TEMPLATES_REFRESH = 60
"""Seconds the dashboard keeps an unhandled-templates answer."""
MIN_LITERAL_CHARS = 3
"""Fewest literal (unmasked, non-blank) characters a template needs for a suggested rule: a
template that is mostly masks ("<n> <ip>") would give a rule matching nearly every message."""

_MASK = re.compile(r"<(uuid|ts|time|mac|ip|hex|n)>")
# What each mask hid, as RE2: a time stamp may hold spaces ("Dec  1 10:15:30"); the rest never do.
_MASKED = {"ts": r".+?"}
_ANY_TOKEN = r"\S+"


def raise_meta_alerts(runtime: Runtime, unmatched: Sequence[Event], publish: Publish) -> int:
    """Count ``unmatched`` (events audited just now) per host, and hand ``publish`` one meta-alert
    for each host this batch took to the threshold; returns how many."""
    settings = runtime.settings
    crossed = runtime.component(_counter).add(Counter(e.hostname for e in unmatched))
    for hostname, count in crossed.items():
        payload = unhandled_meta_alert(
            hostname,
            count,
            team=settings.unhandled_default_team,
            window=settings.unhandled_expiry_seconds,
        )
        publish([payload])
        metrics.META_ALERTS.inc()
        log.warning("meta-alert: %d unhandled events from %s", count, hostname)
    return len(crossed)


def _counter(runtime: Runtime) -> UnhandledCounter:
    # One per Runtime, so its script is registered once; Runtime.reset forgets it with the client.
    settings = runtime.settings
    return UnhandledCounter(
        runtime.redis,
        settings.unhandled_prefix,
        settings.unhandled_threshold,
        settings.unhandled_expiry_seconds,
        settings.unhandled_max_hosts,
    )


@dataclass
class _Group:
    events: int = 0
    hosts: Counter[str] = field(default_factory=Counter)
    teams: Counter[str] = field(default_factory=Counter)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    example: str = ""


def suggested_rule(text: str) -> dict[str, str] | None:
    """The ``match_type`` and ``match_string`` of a rule matching the events of template ``text``.

    A template without masks or blanks is a ``contains`` of itself. Otherwise a ``regex``,
    anchored at both ends: each literal part escaped (``re.escape``; RE2 reads the escapes the
    same way), each blank ``\\s+`` (the template collapsed runs of blanks), each masked part a
    pattern matching what the mask hid. None when the template has fewer than
    :data:`MIN_LITERAL_CHARS` literal characters, or the regex is not one the rule engine takes
    (over :data:`mutt_app.rules.validate.MAX_PATTERN_CHARS`, or too large a program).
    """
    pieces = _MASK.split(text)
    literal = "".join(pieces[0::2])
    if len(literal.replace(" ", "")) < MIN_LITERAL_CHARS:
        return None
    if len(pieces) == 1 and " " not in text:
        return {"match_type": "contains", "match_string": text}
    parts = []
    for index, piece in enumerate(pieces):
        if index % 2:
            parts.append(_MASKED.get(piece, _ANY_TOKEN))
        else:
            parts.append(r"\s+".join(re.escape(word) for word in piece.split(" ")))
    pattern = r"^\s*" + "".join(parts) + r"\s*$"
    if len(pattern) > MAX_PATTERN_CHARS:
        return None
    try:
        validate_rule_fields("regex", pattern, None, None, 100, "Ticket_only", "Log_only", "x")
    except RuleError:
        return None
    return {"match_type": "regex", "match_string": pattern}


def unhandled_templates(
    session: Session,
    *,
    hours: int,
    max_rows: int,
    limit: int,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Unmatched events of the last ``hours``, grouped by template, most events first.

    Reads at most ``max_rows`` events (the newest); ``truncated`` says whether there were more.
    Each template has its event count, distinct hosts and the busiest :data:`TOP_HOSTS`, first and
    last seen, the newest message as an example, and :func:`suggested_rule` (with the team the
    events went to most).
    """
    end = now or datetime.now(UTC)
    start = end - timedelta(hours=hours)
    bounded(session)  # the dashboard's statement timeout
    query = (
        select(
            EventAuditLog.hostname,
            EventAuditLog.message,
            EventAuditLog.event_timestamp,
            EventAuditLog.team_assignment,
        )
        .where(EventAuditLog.matched_rule_id.is_(None), in_window(start, end))
        .order_by(EventAuditLog.event_timestamp.desc())
        .limit(max_rows + 1)
    )
    with timed_query("unhandled_templates"):
        rows = session.execute(query).all()
    truncated = len(rows) > max_rows
    rows = rows[:max_rows]
    if truncated:
        # Not an error, but the counts are of part of the window: say so where operators look.
        log.info(
            "unhandled templates: over %d unmatched events in %d h; counting the newest %d only"
            " (UNHANDLED_TEMPLATES_MAX_ROWS)",
            max_rows,
            hours,
            max_rows,
        )
    templates: dict[str, str] = {}  # message -> template: a repeated message is masked once
    groups: dict[str, _Group] = {}
    for hostname, message, moment, team in rows:
        key = templates.get(message)
        if key is None:
            key = templates[message] = template(message)
        group = groups.get(key)
        if group is None:  # rows come newest first: the first row of a group is its newest
            group = groups[key] = _Group(last_seen=moment, example=message)
        group.events += 1
        group.hosts[hostname] += 1
        if team:
            group.teams[team] += 1
        group.first_seen = moment
    ranked = sorted(groups.items(), key=lambda item: (-item[1].events, item[0]))[:limit]
    return {
        "hours": hours,
        "since": start.isoformat(),
        "until": end.isoformat(),
        "scanned": len(rows),
        "truncated": truncated,
        "max_rows": max_rows,
        "templates": [_described(key, group) for key, group in ranked],
    }


def _described(key: str, group: _Group) -> dict[str, Any]:
    rule = suggested_rule(key)
    if rule is not None and group.teams:
        rule["team_assignment"] = group.teams.most_common(1)[0][0]
    return {
        "template": key,
        "events": group.events,
        "hosts": len(group.hosts),
        "top_hosts": [
            {"hostname": host, "events": n}
            for host, n in sorted(group.hosts.items(), key=lambda hn: (-hn[1], hn[0]))[:TOP_HOSTS]
        ],
        "first_seen": _utc(group.first_seen),
        "last_seen": _utc(group.last_seen),
        "example": group.example,
        "suggested_rule": rule,
    }


def _utc(moment: datetime | None) -> str | None:
    # SQLite gives back naive datetimes; every stored time is UTC. A string: the answer is cached
    # as JSON by the dashboard.
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()
