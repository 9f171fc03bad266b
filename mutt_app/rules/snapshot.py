"""The rule snapshot: the rules' own data as of one rules version, read from the database and compiled.

A snapshot holds what belongs to the rules: the compiled rule set, the development hosts, the device
teams, each rule's own dedup window and dedup key (compiled once here) and the problem/clear pairs.
It holds no maintenance windows: windows are a hold-back stage, and rules sit below holdback in the layers, so
:class:`mutt_app.holdback.window_cache.WindowCache` loads them on the same rules version (it reloads
whenever the rule cache has loaded a new snapshot), and a window change still reaches every worker
within seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import re2
from sqlalchemy import select
from sqlalchemy.orm import Session

from mutt_app.db.models import AlertRule, DevelopmentHost, DeviceTeam
from mutt_app.rules.clearing import roles
from mutt_app.rules.compile import RuleSet, compile_rules
from mutt_app.rules.dedup_key import DEFAULT, DedupKey, DedupKeyError
from mutt_app.rules.validate import REGEX_OPTIONS, Rule

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RuleSnapshot:
    """Everything a decision needs, as of one rules version."""

    ruleset: RuleSet
    dev_hosts: frozenset[str]
    device_teams: Mapping[str, str]
    version: str
    dedup_windows: Mapping[int, int] = field(default_factory=dict)
    """Rule id -> its own dedup window in seconds, for rules that set one."""
    dedup_keys: Mapping[int, DedupKey] = field(default_factory=dict)
    """Rule id -> its own compiled dedup key, for rules that set one."""
    dedup_key_errors: tuple[tuple[int, str], ...] = ()
    """(rule id, why) for the rules whose stored dedup key could not be used (the default applies)."""
    flap_pairs: Mapping[int, tuple[tuple[int, bool], ...]] = field(default_factory=dict)
    """Rule id -> its parts in problem/clear pairs, each (the problem rule of the pair, whether it
    is that problem rule): a rule whose ``clears_rule_id`` names another, and that other; the
    middle rule of a chain has both parts (:mod:`mutt_app.rules.clearing`)."""

    @property
    def version_number(self) -> int | None:
        """``version`` as the integer the audit records (None for a version that is not one)."""
        return int(self.version) if self.version.isdigit() else None

    def dedup_window(self, rule_id: int | None, default: int) -> int:
        """The dedup window in seconds for an alert of ``rule_id``: the rule's own, else ``default``."""
        if rule_id is None:
            return default
        return self.dedup_windows.get(rule_id, default)

    def dedup_key(self, rule_id: int | None) -> DedupKey:
        """The dedup key of an alert of ``rule_id``: the rule's own, else the default key."""
        if rule_id is None:
            return DEFAULT
        return self.dedup_keys.get(rule_id, DEFAULT)


def load_snapshot(
    session: Session, version: str, rows: Sequence[AlertRule] | None = None
) -> RuleSnapshot:
    """Read the active rules, dev hosts and device teams; compile them.

    ``rows``: the active rules to compile instead of those in the database (a draft's, for the
    backtest); the development hosts and device teams are still the database's.
    """
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
    keys, key_errors = dedup_keys(rows)
    return RuleSnapshot(
        ruleset=ruleset,
        dev_hosts=dev_hosts,
        device_teams=teams,
        version=version,
        dedup_windows=windows,
        dedup_keys=keys,
        dedup_key_errors=tuple(key_errors),
        flap_pairs=flap_pairs(rows),
    )


def compile_dedup_key(text: str, match_type: str, match_string: str | None) -> DedupKey:
    """The dedup key ``text`` of a rule with this match, compiled (its ``group:`` parts read the
    rule's regex, compiled as the rule engine compiles it); :class:`DedupKeyError` if it is not
    one."""
    regex = None
    if match_type == "regex" and match_string is not None:
        try:
            regex = re2.compile(match_string, REGEX_OPTIONS)
        except re2.error as exc:
            raise DedupKeyError(f"the rule's regex does not compile: {exc}") from None
    return DedupKey.compile(text, regex)


def dedup_keys(rows: Sequence[AlertRule]) -> tuple[dict[int, DedupKey], list[tuple[int, str]]]:
    """Rule id -> compiled dedup key, for the rules that set one; and (rule id, why) for the keys
    that could not be compiled.

    A key that does not compile (only raw SQL can store one: the rule commands check it) is logged
    and counted (``mutt_alerter_cache_dedup_keys_ignored_count``), and the rule keeps the default
    key, so its alerts are still deduplicated, just by the default.
    """
    keys: dict[int, DedupKey] = {}
    errors: list[tuple[int, str]] = []
    for row in rows:
        if row.dedup_key is None:
            continue
        try:
            keys[row.id] = compile_dedup_key(row.dedup_key, row.match_type, row.match_string)
        except DedupKeyError as exc:
            errors.append((row.id, str(exc)))
            log.error(
                "rule %s: dedup_key %r ignored, the default key applies: %s",
                row.id,
                row.dedup_key,
                exc,
            )
    return keys, errors


def flap_pairs(rows: Sequence[AlertRule]) -> dict[int, tuple[tuple[int, bool], ...]]:
    """Rule id -> its parts in problem/clear pairs, each (problem rule id, is the problem rule),
    for the active ``rows`` (:func:`mutt_app.rules.clearing.roles`: a chain's middle rule has two).
    """
    return roles({row.id: row.clears_rule_id for row in rows})
