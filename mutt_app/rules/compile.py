"""The compiled rule set: which active rule an event matches, found in time that hardly grows with the rules.

Semantics (MUTT v2.5): rules are tried highest priority first, ties by lower id, and the first that
matches wins. ``contains`` is a case-sensitive substring test, ``regex`` an RE2 search, ``oid_prefix``
a ``startswith`` on the trap OID (a leading "." is insignificant on both sides). A rule that also
sets ``syslog_severity`` only matches events at least that severe (numerically lower or equal); a
rule with neither ``match_string`` nor ``trap_oid`` matches on severity alone. A contains or regex
rule ignores ``trap_oid``, an oid_prefix rule ignores ``match_string``.

The rules are compiled once per rules version (:func:`compile_rules`) into a :class:`RuleSet` whose
per-event cost hardly depends on how many rules there are. One search of the message by an RE2 Set
of plain literals finds every contains string present and, for each regex, a literal that every
match of it contains ("Interface" for ``Interface.*down``; :mod:`mutt_app.rules.literals`). Only the
regexes whose literal was seen and whose rules could still beat the best match so far are then run,
by RE2 itself, so regex semantics stay exactly RE2's. A regex that starts with a literal character
and cannot run on past a word or a number (``%LINK-[0-7]-UPDOWN\\b``, ``Gi\\d+/\\d+ down``) joins
the literals' Set as itself, so its hit needs no regex run. Regexes starting with ``^`` that are as
short, and regexes without a usable literal, share a second Set, or a third when they do not
start with ``^``; OID prefixes sit in a fourth, anchored at the start; severity-only rules reduce
to one precomputed answer per event severity.

What grows with the rule count is memory, not work: a bigger DFA for the literals' Set and, for
each regex, a DFA of its own that a rarely matched regex seldom finds in the CPU's caches, so that
each byte it reads can cost a memory access. Hence a regex is run on as little of the message as
its form allows (:func:`_regex_check`), and as few regexes as possible are run at all.

Measured alternatives: one RE2 Set of 4,000 whole regexes classified only 6-10k events/s, as the
many-match DFA's states multiply with ``.*`` patterns and overflow its cache (a Set of literals has
no such blow-up: its states are those of an Aho-Corasick automaton); ``re2.Filter`` (FilteredRE2)
managed 30-50k; pyahocorasick scanned a message twice as slowly with 10,000 keys as with 10, the
Set of literals about 25% more slowly. Choosing each literal's key to start at its rarest
character, or folding case in keys and messages to shrink the DFA's byte classes, did not make the
literals' Set measurably faster. Hyperscan was not used: its PCRE semantics differ from
RE2's in corners (``$`` before a final newline, ``\\s`` and vertical tab, Unicode case folding,
empty matches), it is not a declared dependency, and it has no wheels for ARM hosts.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import re2

from mutt_app.rules.literals import (
    Literal,
    anchored_at_start,
    leading_text,
    literal_runs,
    short_reach,
    starts_with_literal,
)
from mutt_app.rules.validate import REGEX_OPTIONS, Rule, re2_message, rule_problem

log = logging.getLogger(__name__)

# An event without a severity is keyed 8: it passes no severity filter (0..7), only rules without
# one. Each criterion precomputes its best rule per key, so the filter costs an index.
_NO_SEVERITY = 8
_SEVERITY_KEYS = range(_NO_SEVERITY + 1)
_NO_RANK = 1 << 62

# The Sets get more memory than a single regex (REGEX_OPTIONS): it caps a lazily filled DFA cache,
# and a cache too small for the states that traffic visits would be rebuilt over and over.
_SET_OPTIONS = re2.Options()
_SET_OPTIONS.log_errors = False
_SET_OPTIONS.max_mem = 256 << 20


class BudgetExceeded(Exception):
    """Matching ran past its deadline (a ``time.perf_counter()`` value) before it could answer."""


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.perf_counter() > deadline:
        raise BudgetExceeded("matching ran past its time budget")


_Check = Callable[[bytes], object]  # a test of the UTF-8 message; truthy when it holds


@dataclass(frozen=True, slots=True, eq=False)
class _Group:
    """The rules sharing one criterion (a contains string, a regex, an OID prefix)."""

    ranks: tuple[int, ...]  # positions in winning order, ascending
    best: tuple[int, ...]  # per severity key, the best rank whose severity filter passes
    check: _Check | None  # for a regex: confirms that its literal's hit is a match


def _passes(rule_severity: int | None, severity_key: int) -> bool:
    return rule_severity is None or severity_key <= rule_severity


def _severity_key(severity: int | None) -> int:
    return _NO_SEVERITY if severity is None else severity


def _normalise_oid(oid: str) -> str:
    return oid[1:] if oid.startswith(".") else oid


def _encode(text: str) -> bytes:
    # surrogatepass: a lone surrogate must not make classification fail.
    return text.encode("utf-8", "surrogatepass")


def _make_group(ranks: list[int], rules: tuple[Rule, ...], check: _Check | None) -> _Group:
    best = tuple(
        min((r for r in ranks if _passes(rules[r].syslog_severity, key)), default=_NO_RANK)
        for key in _SEVERITY_KEYS
    )
    return _Group(tuple(sorted(ranks)), best, check)


def _literal_pattern(text: str, fold: bool = False) -> str:
    escaped = re2.escape(text)
    return f"(?i:{escaped})" if fold else escaped


def _regex_check(pattern: str, needles: tuple[bytes, ...]) -> _Check:
    """A yes/no RE2 search for one regex, after a look for ``needles``, texts every match contains.

    The needles are cheap to look for and rule out most hits of a literal common in messages. A
    one-pattern Set answers without building a match object, in about half the time of
    ``search``; RE2 only compiles a Set whose DFA has room for many states, so it cannot run out of
    memory later and answer "no" by mistake. A regex is searched in as little of the message as
    its form allows: a regex run rarely has little of its lazily built DFA in the CPU's caches, so
    its cost is about one memory access per byte searched. One starting with ``^`` is matched
    anchored, and stops where the text stops fitting it; one starting with fixed text is matched
    anchored where that text first occurs, then searched from its second occurrence on.
    """
    lead = _encode(leading_text(pattern))
    anchored = anchored_at_start(pattern)
    search = _one_pattern(pattern, anchored)
    at_lead = _one_pattern(pattern, anchored=True) if lead else None
    if search is None or (lead and at_lead is None):
        regex = re2.compile(pattern, REGEX_OPTIONS)
        return lambda data: all(map(data.__contains__, needles)) and regex.search(data)
    if at_lead is not None:
        return _from_lead(lead, needles, at_lead, search)
    if not needles:
        return search
    return lambda data: all(map(data.__contains__, needles)) and search(data)


def _one_pattern(pattern: str, anchored: bool) -> _Check | None:
    """A one-pattern Set's Match: a search, or ``anchored`` a match at the start; None if RE2 refuses."""
    single = re2.Set.MatchSet(REGEX_OPTIONS) if anchored else re2.Set.SearchSet(REGEX_OPTIONS)
    try:
        single.Add(pattern)
        single.Compile()
    except re2.error:
        return None
    return single.Match


def _from_lead(lead: bytes, needles: tuple[bytes, ...], at_lead: _Check, search: _Check) -> _Check:
    """The check of a regex whose every match starts with ``lead``: no match starts before it.

    The regex consumes ``lead`` before any assertion (``\\b``, ``$``) in it, so each assertion sees
    the same neighbours in the slice from an occurrence of ``lead`` as in the whole message.
    """

    def check(data: bytes) -> bool:
        start = data.find(lead)
        if start < 0 or not all(map(data.__contains__, needles)):
            return False
        if at_lead(data[start:]):
            return True
        start = data.find(lead, start + 1)
        return start >= 0 and bool(search(data[start:]))

    return check


def _key_literals(
    runs: Mapping[str, tuple[tuple[Literal, ...], ...] | None], contains: Iterable[str]
) -> dict[str, tuple[Literal, ...]]:
    """For each regex with literals, the one per branch to look for: the least shared, then longest.

    A literal many rules share ("]: error") would hand every message holding it to all of their
    regexes; one unique to its rule rarely wakes a regex that then fails.
    """
    shared = Counter(string.casefold() for string in contains)
    for branches in runs.values():
        for branch in branches or ():
            shared.update({text.casefold() for text, _ in branch})
    return {
        pattern: tuple(
            dict.fromkeys(
                min(branch, key=lambda lit: (shared[lit[0].casefold()], -len(lit[0])))
                for branch in branches
            )
        )
        for pattern, branches in runs.items()
        if branches
    }


def _needles(branches: tuple[tuple[Literal, ...], ...] | None) -> tuple[bytes, ...]:
    """The case-sensitive literals of a one-branch regex: all present in any text it matches."""
    if branches is None or len(branches) != 1:
        return ()
    return tuple(_encode(text) for text, fold in branches[0] if not fold)


def _set_of(patterns: Iterable[str], anchored: bool = False) -> re2.Set | None:
    """One RE2 Set of ``patterns``, index for index; None if empty or RE2 cannot build it."""
    patterns = list(patterns)
    if not patterns:
        return None
    built = re2.Set.MatchSet(_SET_OPTIONS) if anchored else re2.Set.SearchSet(_SET_OPTIONS)
    try:
        for pattern in patterns:
            built.Add(pattern)
        built.Compile()
    except re2.error as exc:
        log.warning(
            "%d patterns do not fit one RE2 set (%s); testing them one by one",
            len(patterns),
            re2_message(exc),
        )
        return None
    return built


def _confirm(
    pending: list[_Group], key: int, best: int, data: bytes, deadline: float | None
) -> int:
    """Run the queued regexes, most promising first, until one matches or none can win."""
    pending.sort(key=lambda group: group.best[key])
    for group in pending:
        rank = group.best[key]
        if rank >= best:
            break
        _check_deadline(deadline)
        if group.check is not None and group.check(data):
            return rank
    return best


class _Index:
    """Groups found by one RE2 Set search, or by testing each in turn if the Set failed."""

    def __init__(self, entries: list[tuple[str, tuple[_Group, ...], _Check]], anchored: bool):
        self.groups = tuple(groups for _, groups, _ in entries)
        self.tests = tuple(test for _, _, test in entries)
        self.set = _set_of((pattern for pattern, _, _ in entries), anchored)
        self.best = tuple(
            min((g.best[key] for groups in self.groups for g in groups), default=_NO_RANK)
            for key in _SEVERITY_KEYS
        )

    def hits(self, data: bytes) -> list[tuple[_Group, ...]]:
        """The groups of every entry whose pattern is found in ``data``."""
        if self.set is not None:
            try:
                return [self.groups[i] for i in self.set.Match(data) or ()]
            except re2.error as exc:  # not known to happen; losing the Set beats losing events
                log.error("RE2 set search failed (%s); testing its patterns one by one", exc)
                self.set = None
        return [groups for groups, test in zip(self.groups, self.tests, strict=True) if test(data)]


class RuleSet:
    """Active rules compiled for matching; build with :func:`compile_rules`.

    ``rules`` holds the usable rules in winning order; ``errors`` the (rule id, reason) of rules
    skipped because they are not valid (a bad regex that reached the database, say).
    """

    def __init__(self, rules: Iterable[Rule]) -> None:
        valid: list[Rule] = []
        self.errors: list[tuple[int, str]] = []
        for rule in rules:
            problem = rule_problem(rule)
            if problem is None:
                valid.append(rule)
            else:
                self.errors.append((rule.id, problem))
        self.rules: tuple[Rule, ...] = tuple(sorted(valid, key=lambda r: (-r.priority, r.id)))

        criteria: dict[tuple[str, str], list[int]] = defaultdict(list)
        for rank, rule in enumerate(self.rules):
            criteria[_criterion(rule)].append(rank)
        runs = {value: literal_runs(value) for kind, value in criteria if kind == "regex"}
        keys = _key_literals(runs, [value for kind, value in criteria if kind == "contains"])

        literals: dict[Literal, list[_Group]] = defaultdict(list)
        unfiltered: list[tuple[str, tuple[_Group, ...], _Check]] = []
        reaches: list[tuple[str, tuple[_Group, ...], _Check]] = []
        oids: list[tuple[str, tuple[_Group, ...], _Check]] = []
        self._severity_only = _make_group([], self.rules, None)
        for (kind, value), ranks in criteria.items():
            if kind == "severity":
                self._severity_only = _make_group(ranks, self.rules, None)
            elif kind == "oid":
                group = _make_group(ranks, self.rules, None)
                oids.append((re2.escape(value), (group,), _prefix_test(value)))
            elif kind == "contains":
                literals[(value, False)].append(_make_group(ranks, self.rules, None))
            elif short_reach(value) and (
                anchored_at_start(value) or (value in keys and starts_with_literal(value))
            ):
                # Searched for itself, among the literals or the Set anchored at the start: its
                # hit is a match, with no regex run.
                check = _regex_check(value, _needles(runs[value]))
                entry = (value, (_make_group(ranks, self.rules, None),), check)
                (unfiltered if anchored_at_start(value) else reaches).append(entry)
            else:
                check = _regex_check(value, _needles(runs[value]))
                group = _make_group(ranks, self.rules, check)
                for literal in keys.get(value, ()):
                    literals[literal].append(group)
                if value not in keys:
                    unfiltered.append((value, (group,), check))

        self._literals = _Index(
            [
                (_literal_pattern(*literal), tuple(groups), _literal_test(literal))
                for literal, groups in literals.items()
            ]
            + reaches,
            anchored=False,
        )
        # A regex starting with ^ is matched by an anchored Set, which stops where the message
        # stops fitting it instead of reading the whole message.
        starts = [anchored_at_start(pattern) for pattern, _, _ in unfiltered]
        self._unfiltered = (
            _Index(
                [e for e, start in zip(unfiltered, starts, strict=True) if start], anchored=True
            ),
            _Index([e for e, start in zip(unfiltered, starts, strict=True) if not start], False),
        )
        self._oids = _Index(oids, anchored=True)

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        return f"<RuleSet {len(self.rules)} rules, {len(self.errors)} skipped>"

    def match(
        self,
        message: str,
        trap_oid: str | None = None,
        severity: int | None = None,
        deadline: float | None = None,
    ) -> Rule | None:
        """The winning rule for an event, or None when no rule matches.

        With a ``deadline`` (a ``time.perf_counter()`` value), raises :class:`BudgetExceeded`
        instead of running one more regex after it. RE2 cannot be stopped mid-search, so the
        deadline is checked between searches, which the rule bounds keep short.
        """
        key = _NO_SEVERITY if severity is None else severity
        best = self._severity_only.best[key]
        if trap_oid and self._oids.best[key] < best:
            for groups in self._oids.hits(_encode(_normalise_oid(trap_oid))):
                best = min(best, groups[0].best[key])
        data = _encode(message)
        if self._literals.best[key] < best:
            pending: list[_Group] = []
            for groups in self._literals.hits(data):
                for group in groups:
                    rank = group.best[key]
                    if rank >= best:
                        continue
                    if group.check is None:  # a contains string: the hit is the match
                        best = rank
                    else:
                        pending.append(group)
            if pending:
                best = _confirm(pending, key, best, data, deadline)
        for unfiltered in self._unfiltered:
            if unfiltered.best[key] < best:
                _check_deadline(deadline)
                for groups in unfiltered.hits(data):
                    best = min(best, groups[0].best[key])
        return None if best == _NO_RANK else self.rules[best]

    def candidates(
        self,
        message: str,
        trap_oid: str | None = None,
        severity: int | None = None,
        deadline: float | None = None,
    ) -> list[Rule]:
        """Every rule the event matches, in winning order: the winner, then those it shadows.

        ``deadline`` as for :meth:`match`: :class:`BudgetExceeded` rather than a search after it.
        """
        data = _encode(message)
        found = [(self._severity_only,), *self._literals.hits(data)]
        for unfiltered in self._unfiltered:
            _check_deadline(deadline)  # as in match: these Sets hold whole regexes
            found.extend(unfiltered.hits(data))
        if trap_oid:
            found.extend(self._oids.hits(_encode(_normalise_oid(trap_oid))))
        matched = set()
        for group in {g for groups in found for g in groups}:
            if group.check is not None:
                _check_deadline(deadline)
                if not group.check(data):
                    continue
            matched.add(group)
        key = _severity_key(severity)
        ranks = sorted({rank for group in matched for rank in group.ranks})
        return [self.rules[r] for r in ranks if _passes(self.rules[r].syslog_severity, key)]


def _literal_test(literal: Literal) -> _Check:
    """The one-by-one fallback test of a literal, should its Set fail."""
    text, fold = literal
    if fold:
        regex = re2.compile(_literal_pattern(text, fold), REGEX_OPTIONS)
        return lambda data: regex.search(data) is not None
    needle = _encode(text)
    return lambda data: needle in data


def _prefix_test(prefix: str) -> _Check:
    """The one-by-one fallback test of an OID prefix, should its Set fail."""
    start = _encode(prefix)
    return lambda data: data.startswith(start)


def _criterion(rule: Rule) -> tuple[str, str]:
    """What a rule tests, as a key shared by rules testing the same thing."""
    if rule.match_type == "oid_prefix":
        assert rule.trap_oid is not None
        return ("oid", _normalise_oid(rule.trap_oid))
    if rule.severity_only:
        return ("severity", "")
    assert rule.match_string is not None
    return (rule.match_type, rule.match_string)


def compile_rules(rules: Iterable[Rule]) -> RuleSet:
    """Compile active rules once per rules version; invalid rules are skipped into ``errors``."""
    return RuleSet(rules)
