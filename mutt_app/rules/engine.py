"""The rule engine: which active rule an event matches, and what to do with the event.

Semantics (MUTT v2.5): rules are tried highest priority first, ties by lower id, and the first that
matches wins. ``contains`` is a case-sensitive substring test, ``regex`` an RE2 search, ``oid_prefix``
a ``startswith`` on the trap OID (a leading "." is insignificant on both sides). A rule that also
sets ``syslog_severity`` only matches events at least that severe (numerically lower or equal); a
rule with neither ``match_string`` nor ``trap_oid`` matches on severity alone. A contains or regex
rule ignores ``trap_oid``, an oid_prefix rule ignores ``match_string``.

The rules are compiled once per rules version (:func:`compile_rules`) into a :class:`RuleSet` whose
per-event cost hardly depends on how many rules there are. One search of the message by an RE2 Set
of plain literals finds every contains string present and, for each regex, a literal that every
match of it contains ("Interface" for ``Interface.*down``). Only the regexes whose literal was seen
and whose rules could still beat the best match so far are then run, by RE2 itself, so regex
semantics stay exactly RE2's. Regexes without a usable literal (``^\\d+$``) share a second Set; OID
prefixes sit in a third, anchored at the start; severity-only rules reduce to one precomputed
answer per event severity.

Measured alternatives: one RE2 Set of 4,000 whole regexes classified only 6-10k events/s, as the
many-match DFA's states multiply with ``.*`` patterns and overflow its cache (a Set of literals has
no such blow-up: its states are those of an Aho-Corasick automaton); ``re2.Filter`` (FilteredRE2)
managed 30-50k; pyahocorasick scanned a message twice as slowly with 10,000 keys as with 10, the
Set of literals about 25% more slowly. Hyperscan was not used: its PCRE semantics differ from
RE2's in corners (``$`` before a final newline, ``\\s`` and vertical tab, Unicode case folding,
empty matches), it is not a declared dependency, and it has no wheels for ARM hosts.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import re2

from mutt_app.events.schema import MAX_OID_CHARS

if TYPE_CHECKING:
    from mutt_app.holdback.windows import CompiledWindow

log = logging.getLogger(__name__)

MATCH_TYPES = ("contains", "regex", "oid_prefix")
PROD_HANDLINGS = ("Page_and_ticket", "Ticket_only", "Email_only", "Log_only")
DEV_HANDLINGS = ("Ticket_only", "Email_only", "Log_only", "Suppress")
FORWARDED_HANDLINGS = frozenset({"Page_and_ticket", "Ticket_only"})
UNMATCHED_HANDLING = "Log_only"

# An event without a severity is keyed 8: it passes no severity filter (0..7), only rules without
# one. Each criterion precomputes its best rule per key, so the filter costs an index.
_NO_SEVERITY = 8
_SEVERITY_KEYS = range(_NO_SEVERITY + 1)
_NO_RANK = 1 << 62

# Shorter literals occur in so many messages that they would filter little and cost a regex run
# each time; such regexes go to the Set of literal-less regexes instead.
_MIN_LITERAL = 3

# Single regexes keep RE2's default 8 MiB, and validation compiles with the same options, so what
# validates compiles. The Sets get more: it caps a lazily filled DFA cache, and a cache too small
# for the states that traffic visits would be rebuilt over and over.
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # errors come back as exceptions; RE2's own stderr lines are noise
_SET_OPTIONS = re2.Options()
_SET_OPTIONS.log_errors = False
_SET_OPTIONS.max_mem = 256 << 20

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


class BudgetExceeded(Exception):
    """Matching ran past its deadline (a ``time.perf_counter()`` value) before it could answer."""


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.perf_counter() > deadline:
        raise BudgetExceeded("matching ran past its time budget")


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


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one event: the winning rule (if any), handling and team."""

    rule_id: int | None
    handling: str
    team: str
    is_dev: bool
    matched: bool

    @property
    def forward(self) -> bool:
        """True when the event goes on to Moogsoft."""
        return self.handling in FORWARDED_HANDLINGS


@dataclass(frozen=True, slots=True)
class Explanation:
    """The rule tester's answer: the decision, and every matching rule in winning order."""

    decision: Decision
    matches: tuple[Rule, ...]


# --- validation --------------------------------------------------------------------------------


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
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        raise RuleError(f"invalid regex {pattern!r}: {_re2_message(exc)}") from None


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


def _re2_message(exc: re2.error) -> str:
    # The binding passes RE2's message through as bytes.
    reason = exc.args[0] if exc.args else "rejected by RE2"
    return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)


def _rule_problem(rule: Rule) -> str | None:
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


# --- required literals of a regex --------------------------------------------------------------
#
# A literal that every match of a regex contains lets the Set of literals skip the regex for
# messages without it. Soundness is all that matters: when unsure the scanner treats text as
# non-literal, which only makes literals shorter (or absent, sending the regex to the Set of
# literal-less regexes). Only the top level of the pattern is read; groups and classes count as
# "anything".

_REPEAT = re.compile(r"\{(\d+)(?:,\d*)?\}")
_FLAG_GROUP = re.compile(r"\(\?([imsU]*)(?:-([imsU]*))?\)")

# Tokens: ("char", c, q) a literal character with quantifier q ("one", "opt": may be absent,
# "many": present, possibly repeated); ("other", "", q) anything else that consumes text;
# ("bar", "", "one") a top-level alternation; ("fold", "on" | "off" | "", "one") a flag group.
_Token = tuple[str, str, str]
_Literal = tuple[str, bool]  # (text, case-insensitive)


def _literal_runs(pattern: str) -> tuple[tuple[_Literal, ...], ...] | None:
    """For each top-level branch of the RE2 ``pattern``, literals every match of it contains.

    A literal marked case-insensitive matches as under RE2's ``(?i)``. None when some branch has
    no literal of at least three characters. Assumes ``pattern`` compiles under RE2.
    """
    if "\\Q" in pattern:  # quoted text could hide parentheses; not worth parsing
        return None
    branches: list[tuple[_Literal, ...]] = []
    found: list[_Literal] = []
    run, fold = "", False
    for kind, value, quantifier in _tokens(pattern):
        if kind == "char" and quantifier == "one":
            run += value
            continue
        if kind == "char" and quantifier == "many":
            # "ab+c" contains "ab" and, as the last b touches the c, "bc".
            found.append((run + value, fold))
            run = value
            continue
        found.append((run, fold))
        run = ""
        if kind == "bar":
            branches.append(_usable(found))
            found = []
        elif kind == "fold" and value:
            fold = value == "on"
    found.append((run, fold))
    branches.append(_usable(found))
    return tuple(branches) if all(branches) else None


def _usable(found: list[_Literal]) -> tuple[_Literal, ...]:
    return tuple(dict.fromkeys(lit for lit in found if len(lit[0]) >= _MIN_LITERAL))


def _tokens(pattern: str) -> Iterator[_Token]:
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        char: str | None = None
        if c == "|":
            yield ("bar", "", "one")
            i += 1
            continue
        if c == "(":
            flags = _FLAG_GROUP.match(pattern, i)
            if flags:
                yield ("fold", _fold_change(flags[1], flags[2]), "one")
                i = flags.end()
                continue
            i = _group_end(pattern, i)
        elif c == "[":
            i = _class_end(pattern, i)
        elif c == "\\":
            char, i = _escape(pattern, i)
        elif c in ".^$*+?":
            i += 1  # a quantifier here follows a non-literal; skipping it is all it needs
        elif c == "{" and (repeat := _REPEAT.match(pattern, i)):
            i = repeat.end()
        else:
            char, i = c, i + 1
        quantifier, i = _quantifier(pattern, i)
        yield ("other", "", quantifier) if char is None else ("char", char, quantifier)


def _fold_change(on: str, off: str | None) -> str:
    if off and "i" in off:
        return "off"
    return "on" if "i" in on else ""


def _quantifier(pattern: str, i: int) -> tuple[str, int]:
    if i >= len(pattern):
        return "one", i
    c = pattern[i]
    if c in "*?":
        quantifier, i = "opt", i + 1
    elif c == "+":
        quantifier, i = "many", i + 1
    elif c == "{" and (repeat := _REPEAT.match(pattern, i)):
        quantifier, i = ("opt" if int(repeat[1]) == 0 else "many"), repeat.end()
    else:
        return "one", i
    if i < len(pattern) and pattern[i] == "?":  # non-greedy
        i += 1
    return quantifier, i


def _escape(pattern: str, i: int) -> tuple[str | None, int]:
    """The literal character of the escape at ``i`` (None if it is not one), and the next index."""
    if i + 1 >= len(pattern):
        return None, len(pattern)
    c = pattern[i + 1]
    if c.isascii() and not c.isalnum():  # RE2: a backslash before punctuation (or _) is literal
        return c, i + 2
    if c in "pPx" and pattern.startswith("{", i + 2):
        end = pattern.find("}", i + 3)
        return None, len(pattern) if end < 0 else end + 1
    if c in "pP":
        return None, i + 3
    if c == "x":
        return None, i + 4
    j = i + 2
    if c.isdigit():  # octal: skipping every following digit can only drop literal text
        while j < len(pattern) and pattern[j].isdigit():
            j += 1
    return None, j


def _class_end(pattern: str, i: int) -> int:
    """Index after the character class opening at ``i``, following RE2's parser."""
    n = len(pattern)
    j = i + 1
    if j < n and pattern[j] == "^":
        j += 1
    if j < n and pattern[j] == "]":  # a leading ] is a member
        j += 1
    while j < n:
        c = pattern[j]
        if c == "\\":
            j += 2
        elif c == "[" and pattern.startswith(":", j + 1) and (k := pattern.find(":]", j + 2)) >= 0:
            j = k + 2  # [:alpha:]; RE2 also searches the rest of the pattern for ":]"
        elif c == "]":
            return j + 1
        else:
            j += 1
    return n


def _group_end(pattern: str, i: int) -> int:
    """Index after the group opening at ``i``."""
    depth, j, n = 0, i, len(pattern)
    while j < n:
        c = pattern[j]
        if c == "\\":
            j += 2
            continue
        if c == "[":
            j = _class_end(pattern, j)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return n


# --- the compiled rule set ---------------------------------------------------------------------

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
    memory later and answer "no" by mistake.
    """
    single = re2.Set.SearchSet(_OPTIONS)
    try:
        single.Add(pattern)
        single.Compile()
    except re2.error:
        regex = re2.compile(pattern, _OPTIONS)
        return lambda data: all(n in data for n in needles) and regex.search(data)
    if not needles:
        return single.Match
    return lambda data: all(n in data for n in needles) and single.Match(data)


def _key_literals(
    runs: Mapping[str, tuple[tuple[_Literal, ...], ...] | None], contains: Iterable[str]
) -> dict[str, tuple[_Literal, ...]]:
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


def _needles(branches: tuple[tuple[_Literal, ...], ...] | None) -> tuple[bytes, ...]:
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
            _re2_message(exc),
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
            problem = _rule_problem(rule)
            if problem is None:
                valid.append(rule)
            else:
                self.errors.append((rule.id, problem))
        self.rules: tuple[Rule, ...] = tuple(sorted(valid, key=lambda r: (-r.priority, r.id)))

        criteria: dict[tuple[str, str], list[int]] = defaultdict(list)
        for rank, rule in enumerate(self.rules):
            criteria[_criterion(rule)].append(rank)
        runs = {value: _literal_runs(value) for kind, value in criteria if kind == "regex"}
        keys = _key_literals(runs, [value for kind, value in criteria if kind == "contains"])

        literals: dict[_Literal, list[_Group]] = defaultdict(list)
        unfiltered: list[tuple[str, tuple[_Group, ...], _Check]] = []
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
            ],
            anchored=False,
        )
        self._unfiltered = _Index(unfiltered, anchored=False)
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
        if self._unfiltered.best[key] < best:
            _check_deadline(deadline)
            for groups in self._unfiltered.hits(data):
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
        found = [(self._severity_only,), *self._literals.hits(data), *self._unfiltered.hits(data)]
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


def _literal_test(literal: _Literal) -> _Check:
    """The one-by-one fallback test of a literal, should its Set fail."""
    text, fold = literal
    if fold:
        regex = re2.compile(_literal_pattern(text, fold), _OPTIONS)
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


@dataclass(frozen=True, slots=True)
class RuleSnapshot:
    """Everything a decision needs, as of one rules version."""

    ruleset: RuleSet
    dev_hosts: frozenset[str]
    device_teams: Mapping[str, str]
    version: str
    dedup_windows: Mapping[int, int] = field(default_factory=dict)
    """Rule id -> its own dedup window in seconds, for rules that set one."""
    flap_pairs: Mapping[int, tuple[int, bool]] = field(default_factory=dict)
    """Rule id -> (the problem rule of its pair, whether it is that problem rule), for the rules
    of a problem/clear pair (a rule whose ``clears_rule_id`` names another, and that other)."""
    maintenance_windows: tuple[CompiledWindow, ...] = ()
    """The maintenance windows (:class:`mutt_app.holdback.windows.CompiledWindow`), loaded with
    the rules so that a change reaches workers the same way."""

    @property
    def version_number(self) -> int | None:
        """``version`` as the integer the audit records (None for a version that is not one)."""
        return int(self.version) if self.version.isdigit() else None


def decide(
    event_message: str,
    event_trap_oid: str | None,
    event_severity: int | None,
    hostname: str,
    snapshot: RuleSnapshot,
    default_team: str,
    deadline: float | None = None,
) -> Decision:
    """The handling of one event: the winning rule's prod or dev handling, and its team.

    Without a match the event is logged only, for the device's team or else ``default_team``.
    Raises :class:`BudgetExceeded` if matching would run past ``deadline`` (see
    :meth:`RuleSet.match`).
    """
    rule = snapshot.ruleset.match(event_message, event_trap_oid, event_severity, deadline)
    return _decision(rule, hostname, snapshot, default_team)


def explain(
    event_message: str,
    event_trap_oid: str | None,
    event_severity: int | None,
    hostname: str,
    snapshot: RuleSnapshot,
    default_team: str,
    deadline: float | None = None,
) -> Explanation:
    """:func:`decide`, plus every matching rule in winning order, for the admin rule tester."""
    matches = snapshot.ruleset.candidates(event_message, event_trap_oid, event_severity, deadline)
    decision = _decision(matches[0] if matches else None, hostname, snapshot, default_team)
    return Explanation(decision, tuple(matches))


def _decision(
    rule: Rule | None, hostname: str, snapshot: RuleSnapshot, default_team: str
) -> Decision:
    is_dev = hostname in snapshot.dev_hosts
    device_team = snapshot.device_teams.get(hostname)
    if rule is None:
        team = default_team if device_team is None else device_team
        return Decision(None, UNMATCHED_HANDLING, team, is_dev, False)
    handling = rule.dev_handling if is_dev else rule.prod_handling
    team = rule.team_assignment if device_team is None else device_team
    return Decision(rule.id, handling, team, is_dev, True)
