"""What a rule is, and whether some fields make one: the match types, handlings, bounds and RE2 checks.

The API, the admin UI, drafts and the unhandled-template suggestions all validate through
:func:`validate_rule_fields` (or :func:`validate_rule_mapping`), and the compiler
(:mod:`mutt_app.rules.compile`) skips any stored rule it refuses, so a rule that saves is a rule that
compiles: both use the same RE2 options (:data:`REGEX_OPTIONS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import re2

from mutt_app.events.schema import MAX_OID_CHARS
from mutt_app.rules.dedup_key import DedupKeyError, parse

MATCH_TYPES = ("contains", "regex", "oid_prefix")
PROD_HANDLINGS = ("Page_and_ticket", "Ticket_only", "Email_only", "Log_only")
DEV_HANDLINGS = ("Ticket_only", "Email_only", "Log_only", "Suppress")

# Single regexes keep RE2's default 8 MiB, and the compiler uses the same options, so what
# validates compiles.
REGEX_OPTIONS = re2.Options()
"""The RE2 options of a single rule's regex, in validation and in the compiled rule set alike."""
REGEX_OPTIONS.log_errors = False  # errors come back as exceptions; RE2's own stderr lines are noise

# Bounds on one rule, so that no rule can make matching or a rules page heavy. Real rules are at
# most a few hundred characters ("Interface.*down", a dozen alternatives); 1024 leaves room several
# times over. The cost of a regex search grows with its compiled program (RE2 instructions), which a
# short pattern can still blow up: ".{1000}" is 8 characters and 8,000 instructions, and a search
# falling back from RE2's DFA to its NFA pays for every instruction at every byte. Typical rules
# compile to under 100 instructions; 5,000 still takes two ".{0,200}" gaps. Lowering RE2's max_mem
# instead would also shrink the DFA cache of every regex and make ordinary rules slower.
MAX_PATTERN_CHARS = 1024
"""Longest ``match_string`` of a regex rule, in characters."""
MAX_REGEX_PROGRAM_SIZE = 5000
"""Largest compiled RE2 program of a regex rule, in instructions (RE2's ``ProgramSize``)."""
MAX_CONTAINS_CHARS = 1024
"""Longest ``match_string`` of a contains rule, in characters."""
MAX_TRAP_OID_CHARS = MAX_OID_CHARS
"""Longest ``trap_oid`` (oid_prefix): an event's trap OID is no longer, so a longer one never matches."""


class RuleError(ValueError):
    """A rule's fields are not a rule the engine can use."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One active alert rule, as the engine sees it."""

    id: int
    match_type: str
    match_string: str | None
    trap_oid: str | None
    syslog_severity: int | None
    priority: int
    prod_handling: str
    dev_handling: str
    team_assignment: str

    @property
    def severity_only(self) -> bool:
        """True when the rule matches on severity alone (no string, no OID)."""
        return (
            self.match_string is None and self.trap_oid is None and self.syslog_severity is not None
        )


def validate_rule_fields(
    match_type: str,
    match_string: str | None,
    trap_oid: str | None,
    syslog_severity: int | None,
    priority: int,
    prod_handling: str,
    dev_handling: str,
    team_assignment: str,
) -> None:
    """Raise :class:`RuleError` naming the first problem that keeps these fields from being a rule.

    Checks the same things as the database constraints, plus that a regex compiles under RE2 (no
    backreferences, no lookaround; the message then carries RE2's own error text), and the bounds
    :data:`MAX_PATTERN_CHARS`, :data:`MAX_REGEX_PROGRAM_SIZE`, :data:`MAX_CONTAINS_CHARS` and
    :data:`MAX_TRAP_OID_CHARS`, which the message names.
    """
    if match_type not in MATCH_TYPES:
        raise RuleError(
            f"unknown match_type {match_type!r}; expected one of {_listed(MATCH_TYPES)}"
        )
    if prod_handling not in PROD_HANDLINGS:
        raise RuleError(
            f"unknown prod_handling {prod_handling!r}; expected one of {_listed(PROD_HANDLINGS)}"
        )
    if dev_handling not in DEV_HANDLINGS:
        raise RuleError(
            f"unknown dev_handling {dev_handling!r}; expected one of {_listed(DEV_HANDLINGS)}"
        )
    if not _is_int(priority) or not 1 <= priority <= 1000:
        raise RuleError(f"priority must be an integer from 1 to 1000, not {priority!r}")
    if syslog_severity is not None and (
        not _is_int(syslog_severity) or not 0 <= syslog_severity <= 7
    ):
        raise RuleError(f"syslog_severity must be an integer from 0 to 7, not {syslog_severity!r}")
    for name, value in (("match_string", match_string), ("trap_oid", trap_oid)):
        if value is not None and not _is_text(value):
            raise RuleError(f"{name} must be text (str, no lone surrogates), not {value!r}")
    _check_lengths(match_type, match_string, trap_oid)
    if match_string == "":
        raise RuleError("match_string must not be empty (leave it unset instead)")
    if trap_oid is not None and not trap_oid.strip():
        raise RuleError("trap_oid must not be empty (leave it unset instead)")
    if not isinstance(team_assignment, str) or not team_assignment.strip():
        raise RuleError("team_assignment must not be empty")
    if match_string is None and trap_oid is None and syslog_severity is None:
        raise RuleError("a rule needs at least one of match_string, trap_oid, syslog_severity")
    if match_type == "oid_prefix" and trap_oid is None:
        raise RuleError("an oid_prefix rule needs a trap_oid")
    if match_type != "oid_prefix" and match_string is None and trap_oid is not None:
        raise RuleError(
            f"a {match_type} rule needs a match_string (only a severity-only rule, with neither"
            " match_string nor trap_oid, may leave it unset)"
        )
    if match_type == "regex" and match_string is not None:
        size = _compile_regex(match_string).programsize
        if size > MAX_REGEX_PROGRAM_SIZE:
            raise RuleError(
                f"regex compiles to {size:,} RE2 instructions; at most {MAX_REGEX_PROGRAM_SIZE:,}"
                " (MAX_REGEX_PROGRAM_SIZE) are allowed: large counted repetitions such as .{1000}"
                " make every search slow"
            )


def _check_lengths(match_type: str, match_string: str | None, trap_oid: str | None) -> None:
    """RuleError if a string field is longer than its bound (checked before compiling anything)."""
    limits = []
    if match_type == "regex":
        limits.append(("match_string", match_string, MAX_PATTERN_CHARS, "MAX_PATTERN_CHARS"))
    else:  # an oid_prefix rule ignores its match_string, but it is still stored and shown
        limits.append(("match_string", match_string, MAX_CONTAINS_CHARS, "MAX_CONTAINS_CHARS"))
    limits.append(("trap_oid", trap_oid, MAX_TRAP_OID_CHARS, "MAX_TRAP_OID_CHARS"))
    for name, value, limit, constant in limits:
        if value is not None and len(value) > limit:
            raise RuleError(
                f"{name} is {len(value):,} characters; a {match_type} rule's {name} may have at"
                f" most {limit:,} ({constant})"
            )


def _listed(names: Iterable[str]) -> str:
    return ", ".join(names)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_text(value: object) -> bool:
    # RE2 reads UTF-8, and a lone surrogate has no UTF-8 form.
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _compile_regex(pattern: str) -> re2._Regexp:
    """The RE2 regex for ``pattern``, or RuleError carrying RE2's reason."""
    try:
        return re2.compile(pattern, REGEX_OPTIONS)
    except re2.error as exc:
        raise RuleError(f"invalid regex {pattern!r}: {re2_message(exc)}") from None


def validate_rule_mapping(fields: Mapping[str, Any]) -> None:
    """:func:`validate_rule_fields` on a rule's fields given by name (an API body, a draft entry)."""
    validate_rule_fields(
        fields["match_type"],
        fields["match_string"],
        fields["trap_oid"],
        fields["syslog_severity"],
        fields["priority"],
        fields["prod_handling"],
        fields["dev_handling"],
        fields["team_assignment"],
    )
    check_dedup_key(fields.get("dedup_key"), fields["match_type"], fields["match_string"])


def check_dedup_key(dedup_key: str | None, match_type: str, match_string: str | None) -> None:
    """:class:`RuleError` unless ``dedup_key`` is empty or a key of this rule
    (:func:`mutt_app.rules.dedup_key.parse`; ``group:`` parts need the regex's named groups)."""
    if dedup_key is None:
        return
    groups = None
    if match_type == "regex" and match_string is not None:
        groups = tuple(_compile_regex(match_string).groupindex)
    try:
        parse(dedup_key, groups)
    except DedupKeyError as exc:
        raise RuleError(str(exc)) from None


def re2_message(exc: re2.error) -> str:
    """RE2's reason for refusing a pattern, as text."""
    # The binding passes RE2's message through as bytes.
    reason = exc.args[0] if exc.args else "rejected by RE2"
    return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)


def rule_problem(rule: Rule) -> str | None:
    """Why ``rule`` is not valid (:func:`validate_rule_fields`'s message), or None when it is."""
    try:
        validate_rule_fields(
            rule.match_type,
            rule.match_string,
            rule.trap_oid,
            rule.syslog_severity,
            rule.priority,
            rule.prod_handling,
            rule.dev_handling,
            rule.team_assignment,
        )
    except RuleError as exc:
        return str(exc)
    return None
