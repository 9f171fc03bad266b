"""The rule engine (mutt_app.rules: validate, literals, compile, decide): matching order and
semantics, decisions, validation, and the compiled matcher's agreement with a naive rule-by-rule
reference on large random rule sets."""

from __future__ import annotations

import itertools
import logging
import random
import re
import string
import time
from collections.abc import Iterable, Iterator, Sequence

import pytest
import re2

from mutt_app.rules import compile as rules_compile
from mutt_app.rules import literals, validate
from mutt_app.rules.compile import compile_rules
from mutt_app.rules.decide import Decision, decide, explain
from mutt_app.rules.snapshot import RuleSnapshot
from mutt_app.rules.validate import Rule, RuleError, validate_rule_fields

DEFAULT_TEAM = "OPS"


def rule(
    rule_id: int,
    match_type: str = "contains",
    match_string: str | None = None,
    *,
    trap_oid: str | None = None,
    severity: int | None = None,
    priority: int = 500,
    prod: str = "Page_and_ticket",
    dev: str = "Ticket_only",
    team: str = "NETO",
) -> Rule:
    return Rule(
        id=rule_id,
        match_type=match_type,
        match_string=match_string,
        trap_oid=trap_oid,
        syslog_severity=severity,
        priority=priority,
        prod_handling=prod,
        dev_handling=dev,
        team_assignment=team,
    )


# The MUTT v2.5 spec's example rules.
SPEC_RULES = (
    rule(1, "contains", "CRITICAL", priority=900, prod="Page_and_ticket", dev="Ticket_only"),
    rule(2, "regex", "Interface.*down", priority=800, prod="Page_and_ticket", dev="Email_only"),
    rule(3, "regex", "disk.*full", priority=700, prod="Ticket_only", dev="Log_only", team="UNIX"),
    rule(4, "contains", None, severity=7, priority=1, prod="Log_only", dev="Suppress"),
)


def snapshot(
    rules: Iterable[Rule],
    dev_hosts: Iterable[str] = ("dev-sw1",),
    teams: dict[str, str] | None = None,
) -> RuleSnapshot:
    return RuleSnapshot(
        ruleset=compile_rules(rules),
        dev_hosts=frozenset(dev_hosts),
        device_teams=teams if teams is not None else {"db01": "DBA"},
        version="1",
    )


def winner(rules: Iterable[Rule], message: str, oid: str | None = None, severity: int | None = 3):
    found = compile_rules(rules).match(message, oid, severity)
    return None if found is None else found.id


# --- decisions with the spec's rules -------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "severity", "host", "expected"),
    [
        (
            "CRITICAL: Interface Gi0/1 down",
            3,
            "sw1",
            Decision(1, "Page_and_ticket", "NETO", is_dev=False, matched=True),
        ),
        (
            "Interface Gi0/1 changed state to down",
            5,
            "sw1",
            Decision(2, "Page_and_ticket", "NETO", is_dev=False, matched=True),
        ),
        (
            "Interface Gi0/1 changed state to down",
            5,
            "dev-sw1",
            Decision(2, "Email_only", "NETO", is_dev=True, matched=True),
        ),
        ("disk /var is full", 2, "web1", Decision(3, "Ticket_only", "UNIX", False, True)),
        ("disk /var is full", 2, "dev-sw1", Decision(3, "Log_only", "UNIX", True, True)),
        ("disk /var is full", 2, "db01", Decision(3, "Ticket_only", "DBA", False, True)),
        ("all quiet", 6, "sw1", Decision(4, "Log_only", "NETO", False, True)),
        ("all quiet", 6, "dev-sw1", Decision(4, "Suppress", "NETO", True, True)),
        ("all quiet", None, "sw1", Decision(None, "Log_only", DEFAULT_TEAM, False, False)),
        ("all quiet", None, "db01", Decision(None, "Log_only", "DBA", False, False)),
        ("all quiet", None, "dev-sw1", Decision(None, "Log_only", DEFAULT_TEAM, True, False)),
    ],
    ids=[
        "contains-beats-lower-priority-regex",
        "regex-prod-handling",
        "regex-dev-handling",
        "rule-team",
        "dev-handling-of-ticket-rule",
        "device-team-overrides-rule-team",
        "severity-only-catch-all",
        "catch-all-suppressed-on-dev",
        "no-match-default-team",
        "no-match-device-team",
        "no-match-on-dev-host",
    ],
)
def test_spec_rules_decide(message, severity, host, expected):
    assert decide(message, None, severity, host, snapshot(SPEC_RULES), DEFAULT_TEAM) == expected


@pytest.mark.parametrize(
    ("handling", "forward"),
    [
        ("Page_and_ticket", True),
        ("Ticket_only", True),
        ("Email_only", False),
        ("Log_only", False),
        ("Suppress", False),
    ],
)
def test_forward_only_for_paging_and_ticketing(handling, forward):
    assert Decision(1, handling, "NETO", False, True).forward is forward


def test_explain_lists_winner_then_shadowed_rules():
    result = explain(
        "CRITICAL Interface Gi0/1 down, disk full", None, 3, "sw1", snapshot(SPEC_RULES), "OPS"
    )
    assert [r.id for r in result.matches] == [1, 2, 3, 4]
    assert result.decision == Decision(1, "Page_and_ticket", "NETO", False, True)


def test_explain_without_match():
    result = explain("all quiet", None, None, "db01", snapshot(SPEC_RULES), "OPS")
    assert result.matches == ()
    assert result.decision == Decision(None, "Log_only", "DBA", False, False)


# --- order ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([rule(1, "contains", "link", priority=10), rule(2, "contains", "down", priority=20)], 2),
        ([rule(1, "contains", "link", priority=20), rule(2, "contains", "down", priority=10)], 1),
        ([rule(7, "contains", "link", priority=10), rule(3, "regex", "d.wn", priority=10)], 3),
        ([rule(3, "contains", "link", priority=10), rule(7, "regex", "d.wn", priority=10)], 3),
        ([rule(5, "contains", "link"), rule(4, "contains", "link")], 4),
        ([rule(1, "contains", "nomatch", priority=1000), rule(2, "contains", "link")], 2),
    ],
    ids=[
        "higher-priority-wins",
        "higher-priority-wins-whatever-the-list-order",
        "tie-lower-id-wins",
        "tie-lower-id-wins-other-way",
        "tie-on-the-same-string",
        "non-matching-rules-skipped",
    ],
)
def test_order(rules, expected):
    assert winner(rules, "link went down") == expected


# --- match types ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("match_type", "pattern", "message", "matches"),
    [
        ("contains", "CRITICAL", "x CRITICAL y", True),
        ("contains", "CRITICAL", "x critical y", False),
        ("contains", "CRITICAL", "x Critical y", False),
        ("contains", "Gi0/1 down", "Interface Gi0/1 down now", True),
        ("contains", ".*", "anything", False),
        ("regex", "down", "link went down yesterday", True),
        ("regex", "Interface.*down", "prefix Interface Gi0/1 down suffix", True),
        ("regex", "^link", "the link", False),
        ("regex", "down$", "down the link", False),
        ("regex", "down$", "link down", True),
        ("regex", "interface", "Interface", False),
        ("regex", "(?i)interface.*DOWN", "Interface Gi0/1 down", True),
        ("regex", "(?i)kelvin", "\u212aelvin scale", True),
        ("regex", r"port \d+ (up|down)", "port 12 down", True),
        ("regex", r"port \d+ (up|down)", "port x down", False),
        ("regex", r"^\d+$", "12345", True),
        ("regex", "foo|barbaz", "a barbaz b", True),
        ("regex", "ab+cd", "xabbbcdx", True),
        ("regex", "ab+cd", "xacdx", False),
        ("regex", "caf\u00e9", "un caf\u00e9 noir", True),
    ],
    ids=lambda value: repr(value) if isinstance(value, str) else None,
)
def test_text_match_types(match_type, pattern, message, matches):
    assert (winner([rule(1, match_type, pattern)], message) == 1) is matches


@pytest.mark.parametrize(
    ("prefix", "oid", "matches"),
    [
        ("1.3.6.1.4.1.9", "1.3.6.1.4.1.9.9.41.2", True),
        ("1.3.6.1.4.1.9", ".1.3.6.1.4.1.9.9.41.2", True),
        (".1.3.6.1.4.1.9", "1.3.6.1.4.1.9.9.41.2", True),
        (".1.3.6.1.4.1.9", ".1.3.6.1.4.1.9", True),
        ("1.3.6.1.4.1.9", "1.3.6.1.4.1.99.1", True),  # a plain string prefix, as specified
        ("1.3.6.1.4.1.9", "1.3.6.1.4.1.8.1", False),
        ("1.3.6.1.4.1.9", "1.3.6.1.4.1", False),
        ("1.3.6.1.4.1.9", "2.1.3.6.1.4.1.9", False),
        ("1.3.6.1.4.1.9", None, False),
        ("1.3.6.1.4.1.9", "", False),
        ("1.3", "1.3\x001.3", True),
        ("1.3.6", "1.3\x001.3.6", False),
    ],
)
def test_oid_prefix(prefix, oid, matches):
    found = winner([rule(1, "oid_prefix", trap_oid=prefix)], "message text", oid)
    assert (found == 1) is matches


def test_oid_prefix_rule_ignores_message_and_text_rule_ignores_oid():
    rules = [
        rule(1, "oid_prefix", "never in the message", trap_oid="1.3.6.1.4.1.9", priority=10),
        rule(2, "contains", "link", trap_oid="9.9.9", priority=5),
    ]
    assert winner(rules, "link down", "1.3.6.1.4.1.9.1") == 1
    assert winner(rules, "link down", "1.3.6.1.4.1.8.1") == 2


# --- severity ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_severity", "matches"),
    [(0, True), (2, True), (3, True), (4, False), (7, False), (None, False)],
    ids=["emergency", "more-severe", "equal", "less-severe", "debug", "no-severity"],
)
@pytest.mark.parametrize(
    "matching_rule",
    [
        rule(1, "contains", "link", severity=3),
        rule(1, "regex", "l.nk", severity=3),
        rule(1, "regex", r"^\w+ \w+$", severity=3),  # no literal: goes to the Set of such regexes
        rule(1, "oid_prefix", trap_oid="1.3.6", severity=3),
        rule(1, "contains", None, severity=3),
        rule(1, "regex", None, severity=3),
    ],
    ids=["contains", "regex", "literal-less-regex", "oid", "severity-only", "severity-only-regex"],
)
def test_severity_filter(matching_rule, event_severity, matches):
    found = winner([matching_rule], "link down", "1.3.6.1", event_severity)
    assert (found == 1) is matches


def test_rule_without_severity_matches_event_without_severity():
    assert winner([rule(1, "contains", "link")], "link down", None, None) == 1


def test_severity_filter_falls_through_to_next_rule():
    rules = [
        rule(1, "contains", "link", severity=2, priority=100),
        rule(2, "contains", "link", priority=50),
        rule(3, "contains", None, severity=7, priority=1),
    ]
    assert winner(rules, "link down", None, 1) == 1
    assert winner(rules, "link down", None, 5) == 2
    assert winner(rules, "quiet", None, 5) == 3
    assert [r.id for r in compile_rules(rules).candidates("link down", None, 5)] == [2, 3]


# --- validation ----------------------------------------------------------------------------------

VALID = {
    "match_type": "contains",
    "match_string": "CRITICAL",
    "trap_oid": None,
    "syslog_severity": None,
    "priority": 900,
    "prod_handling": "Page_and_ticket",
    "dev_handling": "Ticket_only",
    "team_assignment": "NETO",
}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"match_type": "regex", "match_string": "Interface.*down"},
        {"match_type": "oid_prefix", "match_string": None, "trap_oid": ".1.3.6.1"},
        {"match_string": None, "syslog_severity": 7},
        {"match_type": "regex", "match_string": None, "syslog_severity": 0},
        {"priority": 1, "syslog_severity": 0},
        {"priority": 1000, "syslog_severity": 7},
    ],
)
def test_valid_rules_pass(changes):
    validate_rule_fields(**{**VALID, **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"match_type": "startswith"}, "unknown match_type 'startswith'"),
        ({"prod_handling": "Suppress"}, "unknown prod_handling 'Suppress'"),
        ({"dev_handling": "Page_and_ticket"}, "unknown dev_handling 'Page_and_ticket'"),
        ({"priority": 0}, "priority must be an integer from 1 to 1000"),
        ({"priority": 1001}, "priority must be an integer from 1 to 1000"),
        ({"priority": True}, "priority must be an integer from 1 to 1000"),
        ({"syslog_severity": -1}, "syslog_severity must be an integer from 0 to 7"),
        ({"syslog_severity": 8}, "syslog_severity must be an integer from 0 to 7"),
        ({"match_string": ""}, "match_string must not be empty"),
        ({"match_string": "x\ud800"}, "match_string must be text (str, no lone surrogates)"),
        ({"match_string": b"CRITICAL"}, "match_string must be text"),
        ({"trap_oid": 1.3}, "trap_oid must be text"),
        ({"trap_oid": ""}, "trap_oid must not be empty"),
        ({"team_assignment": ""}, "team_assignment must not be empty"),
        ({"team_assignment": "  "}, "team_assignment must not be empty"),
        (
            {"match_string": None},
            "a rule needs at least one of match_string, trap_oid, syslog_severity",
        ),
        (
            {"match_type": "oid_prefix", "match_string": None, "syslog_severity": 3},
            "an oid_prefix rule needs a trap_oid",
        ),
        (
            {"match_string": None, "trap_oid": "1.3.6"},
            "a contains rule needs a match_string",
        ),
        (
            {
                "match_type": "regex",
                "match_string": None,
                "trap_oid": "1.3.6",
                "syslog_severity": 2,
            },
            "a regex rule needs a match_string",
        ),
    ],
)
def test_invalid_rules_rejected(changes, message):
    with pytest.raises(RuleError, match="^" + re.escape(message)):
        validate_rule_fields(**{**VALID, **changes})


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a", "missing ): (a"),
        (r"(a)\1", r"invalid escape sequence: \1"),
        ("(?=x)", "invalid perl operator: (?="),
        ("(?<!x)y", "invalid perl operator: (?<!"),
        ("[z-a]", "invalid character class range: z-a"),
        ("a{1001}", "invalid repetition size: {1001}"),
        ("x**", "bad repetition operator: **"),
        (r"\Z", r"invalid escape sequence: \Z"),
    ],
    ids=[
        "unbalanced",
        "backreference",
        "lookahead",
        "lookbehind",
        "bad-range",
        "huge-repeat",
        "stacked-repeat",
        "python-only-escape",
    ],
)
def test_regex_rejected_with_engine_reason(pattern, reason):
    with pytest.raises(RuleError) as raised:
        validate_rule_fields(**{**VALID, "match_type": "regex", "match_string": pattern})
    assert str(raised.value) == f"invalid regex {pattern!r}: {reason}"


def test_rule_error_is_a_value_error():
    assert issubclass(RuleError, ValueError)


def test_compile_skips_invalid_rules_and_keeps_the_rest():
    ruleset = compile_rules(
        [
            rule(1, "regex", "(a", priority=1000),
            rule(2, "regex", r"(a)\1", priority=1000),
            rule(3, "contains", "", priority=1000),
            rule(4, "regex", "Interface.*down", priority=10),
        ]
    )
    assert ruleset.errors == [
        (1, "invalid regex '(a': missing ): (a"),
        (2, r"invalid regex '(a)\\1': invalid escape sequence: \1"),
        (3, "match_string must not be empty (leave it unset instead)"),
    ]
    assert len(ruleset) == 1
    assert ruleset.match("Interface a down").id == 4


# --- bounds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("match_type", "match_string", "trap_oid", "limit"),
    [
        ("regex", "x" * 100_000, None, "MAX_PATTERN_CHARS"),  # the probe's rule
        ("regex", "a" * (validate.MAX_PATTERN_CHARS + 1), None, "MAX_PATTERN_CHARS"),
        ("contains", "y" * 5_000_000, None, "MAX_CONTAINS_CHARS"),  # the probe's other rule
        ("contains", "y" * (validate.MAX_CONTAINS_CHARS + 1), None, "MAX_CONTAINS_CHARS"),
        ("oid_prefix", None, "1." * 600, "MAX_TRAP_OID_CHARS"),
        ("oid_prefix", "x" * 5000, "1.3.6", "MAX_CONTAINS_CHARS"),  # ignored, but still stored
    ],
)
def test_rules_over_a_length_bound_are_refused_naming_it(match_type, match_string, trap_oid, limit):
    with pytest.raises(RuleError) as raised:
        validate_rule_fields(
            match_type, match_string, trap_oid, None, 100, "Log_only", "Log_only", "NETO"
        )
    message = str(raised.value)
    assert limit in message and f"{getattr(validate, limit):,}" in message
    assert len(message) < 200  # the message names the bound; it does not echo the string


def test_rules_at_the_length_bounds_are_accepted():
    for match_type, limit in (
        ("regex", validate.MAX_PATTERN_CHARS),
        ("contains", validate.MAX_CONTAINS_CHARS),
    ):
        text = "a" * limit
        validate_rule_fields(match_type, text, None, None, 100, "Log_only", "Log_only", "NETO")
    oid = ("1." * validate.MAX_TRAP_OID_CHARS)[: validate.MAX_TRAP_OID_CHARS - 1] + "1"
    validate_rule_fields("oid_prefix", None, oid, None, 100, "Log_only", "Log_only", "NETO")


def test_a_short_regex_with_a_huge_program_is_refused():
    pattern = ".{1000}"  # 7 characters, thousands of RE2 instructions
    assert re2.compile(pattern).programsize > validate.MAX_REGEX_PROGRAM_SIZE
    with pytest.raises(RuleError, match="MAX_REGEX_PROGRAM_SIZE"):
        validate_rule_fields("regex", pattern, None, None, 100, "Log_only", "Log_only", "NETO")
    validate_rule_fields("regex", "x.{0,200}y.{0,200}z", None, None, 1, "Log_only", "Log_only", "N")


def test_stored_rules_over_a_bound_are_skipped_not_compiled():
    ruleset = compile_rules(
        [
            rule(1, "regex", "x" * 100_000, priority=1000),
            rule(2, "contains", "y" * 5_000_000, priority=1000),
            rule(3, "regex", ".{1000}", priority=1000),
            rule(4, "regex", "Interface.*down", priority=10),
        ]
    )
    assert [rule_id for rule_id, _ in ruleset.errors] == [1, 2, 3]
    assert "MAX_PATTERN_CHARS" in ruleset.errors[0][1]
    assert "MAX_CONTAINS_CHARS" in ruleset.errors[1][1]
    assert "MAX_REGEX_PROGRAM_SIZE" in ruleset.errors[2][1]
    assert ruleset.match("Interface a down " + "x" * 100_000).id == 4


def test_matching_stops_at_its_deadline_between_regex_searches():
    ruleset = compile_rules([rule(1, "regex", "Interface.*down"), rule(2, "regex", r"^\d+$")])
    past = time.perf_counter() - 1
    for message in ("Interface a down", "12345"):  # a filtered regex, a literal-less one
        with pytest.raises(rules_compile.BudgetExceeded):
            ruleset.match(message, deadline=past)
        with pytest.raises(rules_compile.BudgetExceeded):
            ruleset.candidates(message, deadline=past)
        assert ruleset.match(message, deadline=time.perf_counter() + 60) is not None
    # Nothing to search (no literal seen, contains only): no check, so a past deadline is moot.
    assert compile_rules([rule(3, "contains", "CRITICAL")]).match("CRITICAL", deadline=past)


def test_empty_rule_set_matches_nothing():
    ruleset = compile_rules([])
    assert len(ruleset) == 0
    assert ruleset.match("anything", "1.3.6", 0) is None
    assert ruleset.candidates("anything", "1.3.6", 0) == []


# --- required literals of a regex ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("Interface.*down", [[("Interface", False), ("down", False)]]),
        (r"disk\.full", [[("disk.full", False)]]),
        ("(?i)Link (up|down)", [[("Link ", True)]]),
        ("abc(?i)DEFG(?-i)HIJ", [[("abc", False), ("DEFG", True), ("HIJ", False)]]),
        ("ab+cd", [[("bcd", False)]]),
        ("xy{2,}zw", [[("yzw", False)]]),
        ("abcd?ef", [[("abc", False)]]),
        (r"\x41BCD\pLxyz", [[("BCD", False), ("xyz", False)]]),
        ("[[:alpha:]]+ word", [[(" word", False)]]),
        ("^[^]x]+ yes$", [[(" yes", False)]]),
        ("x{foo}", [[("x{foo}", False)]]),
        ("foo|barbaz", [[("foo", False)], [("barbaz", False)]]),
    ],
)
def test_literal_runs(pattern, expected):
    runs = literals.literal_runs(pattern)
    assert runs == tuple(tuple(branch) for branch in expected)


@pytest.mark.parametrize(
    "pattern", [r"^\d+$", "fo|barbaz", "ab(c|d)ef", r"\QA|B\E", "(?i)", "a.b.c", "[abc]{3}"]
)
def test_regex_without_usable_literal(pattern):
    assert literals.literal_runs(pattern) is None


def test_escapes_read_as_literals_are_literal_in_re2():
    for code in range(128):
        pattern = "\\" + chr(code)
        try:
            re2.compile(pattern)
        except re2.error:
            continue
        char, end = literals._escape(pattern, 0)
        assert end == 2
        if char is not None:
            assert re2.fullmatch(pattern, char), pattern


def _random_regex(rnd: random.Random, depth: int = 0, fold: bool = False) -> tuple[str, str]:
    """A random RE2 pattern of the constructs the literal scanner reads, and a text it matches."""
    parts = [_random_piece(rnd, depth, fold) for _ in range(rnd.randint(1, 5))]
    return "".join(p for p, _ in parts), "".join(t for _, t in parts)


def _cased(rnd: random.Random, text: str, fold: bool) -> str:
    if not fold:
        return text
    variants = {"k": "kK\u212a", "s": "sS\u017f"}
    return "".join(rnd.choice(variants.get(c.lower(), c.lower() + c.upper())) for c in text)


def _random_piece(rnd: random.Random, depth: int, fold: bool) -> tuple[str, str]:
    kind = rnd.randrange(12 if depth < 2 else 8)
    if kind <= 2:
        word = "".join(rnd.choice("abkstxyz") for _ in range(rnd.randint(1, 6)))
        return word, _cased(rnd, word, fold)
    if kind == 3:
        char = rnd.choice(".[](){}*+?|^$ \\-_:/")
        return "\\" + char, char
    if kind == 4:
        return rnd.choice(
            [("[a-c]", "b"), ("[^x]", "y"), (r"\d", "7"), (r"\w", "q"), (r"\s", " "), (".", "z"),
             ("[[:digit:]]", "5"), (r"\pL", "\u00e9"), (r"\x41", "A"), (r"\x{42}", "B"),
             ("[]a]", "]"), (r"\101", "A")]
        )  # fmt: skip
    if kind == 5:
        char = rnd.choice("abkst")
        quantifier, count = rnd.choice(
            [("*", 0), ("*", 2), ("+", 1), ("+", 3), ("?", 0), ("?", 1), ("{2}", 2),
             ("{1,3}", 3), ("{0,2}", 0), ("{2,}", 4), ("*?", 1), ("+?", 2)]
        )  # fmt: skip
        return char + quantifier, _cased(rnd, char * count, fold)
    if kind == 6:
        return rnd.choice([("^", ""), ("$", ""), (r"\b", "")]) if depth else ("", "")
    if kind == 7:
        return "{", "{"  # not a repetition, so a literal brace in RE2
    inner, text = _random_regex(rnd, depth + 1, fold)
    if kind == 8:
        other, _ = _random_regex(rnd, depth + 1, fold)
        return f"({other}|{inner})", text
    if kind == 9:
        return f"(?:{inner})+", text + text
    if kind == 10:
        return f"(?i:{inner})", _cased(rnd, text.lower(), True) if text.isascii() else text
    return f"(?P<g{depth}>{inner})?", ""


def test_literal_runs_are_in_every_match():
    """Whatever a random pattern matches contains, in some branch, all of that branch's literals."""
    rnd = random.Random(1)
    checked = 0
    for _ in range(5000):
        pattern, sample = _random_regex(rnd)
        if rnd.random() < 0.3:
            other, _ = _random_regex(rnd)
            pattern = f"{other}|{pattern}" if rnd.random() < 0.5 else f"{pattern}|{other}"
        if rnd.random() < 0.2:
            pattern, sample = "(?i)" + pattern, _cased(rnd, sample.lower(), True)
        text = f"{rnd.choice(['', 'pre ', 'Kx'])}{sample}{rnd.choice(['', ' post', '.'])}"
        try:
            compiled = re2.compile(pattern)
        except re2.error:
            continue  # the generator can stack quantifiers, say; validation refuses those
        if not compiled.search(text):
            continue  # anchors placed mid-pattern
        runs = literals.literal_runs(pattern)
        if runs is None:
            continue
        checked += 1
        assert any(all(_found(lit, text) for lit in branch) for branch in runs), (pattern, text)
        assert compile_rules([rule(1, "regex", pattern)]).match(text) is not None
    assert checked > 1200


def _found(literal: tuple[str, bool], text: str) -> bool:
    literal_text, fold = literal
    if fold:
        return re2.search("(?i:" + re2.escape(literal_text) + ")", text) is not None
    return literal_text in text


# --- agreement with a naive reference on large random rule sets ----------------------------------


def naive_matches(
    rules: Sequence[Rule], message: str, oid: str | None, severity: int | None
) -> Iterator[Rule]:
    """The matching rules in winning order, trying each rule in turn as the spec words it.

    ``rules`` must already be in winning order: highest priority first, then lowest id.
    """
    data = message.encode("utf-8", "surrogatepass")
    event_oid = oid.removeprefix(".") if oid else None
    for candidate in rules:
        limit = candidate.syslog_severity
        if limit is not None and (severity is None or severity > limit):
            continue
        if candidate.match_type == "oid_prefix":
            assert candidate.trap_oid is not None
            ok = event_oid is not None and event_oid.startswith(
                candidate.trap_oid.removeprefix(".")
            )
        elif candidate.match_string is None:
            ok = candidate.trap_oid is None and limit is not None
        elif candidate.match_type == "contains":
            ok = candidate.match_string in message
        else:
            ok = _compiled(candidate.match_string).search(data) is not None
        if ok:
            yield candidate


_COMPILED: dict[str, re2._Regexp] = {}


def _compiled(pattern: str) -> re2._Regexp:
    if pattern not in _COMPILED:
        _COMPILED[pattern] = re2.compile(pattern)
    return _COMPILED[pattern]


WORDS = ["link", "Link", "down", "up", "Interface", "interface", "error", "ERROR", "disk", "full"]
WORDS += ["CRITICAL", "port", "vlan", "bgp", "neighbor", "sshd", "kernel", "fan", "power", "oom"]


def random_word(rnd: random.Random) -> str:
    if rnd.random() < 0.5:
        return rnd.choice(WORDS)
    return "".join(rnd.choice("bdgklmnprstvz") + rnd.choice("aeiou") for _ in range(2))


def random_regex(rnd: random.Random) -> str:
    a, b = random_word(rnd), random_word(rnd)
    n = rnd.randint(1, 4)
    return rnd.choice(
        [
            f"{a}.*{b}",
            rf"{a} \d+ {b}",
            rf"(?i){a}\s+{b}",
            rf"^{a}\b",
            rf"{b}$",
            f"{a}|{b}",
            rf"{a[:2]}\d{{{n}}}",  # no usable literal
            rf"^\w+ {a[:2]}",  # no usable literal
            rf"({a}|{b}) (port|vlan) \d+",
            rf"{a[0]}+{a[1:]} {b}?",
            f"(?i:{a}){b}",
            rf"{a}[-_ ]?{b}",
            rf"\b{a}\w*\b",
        ]
    )


OID_ROOTS = ["1.3.6.1.4.1.9", "1.3.6.1.4.1.2636", "1.3.6.1.2.1", "1.3.6.1.6.3.1.1.5"]


def random_oid(rnd: random.Random) -> str:
    oid = rnd.choice(OID_ROOTS) + "".join(
        f".{rnd.randint(1, 12)}" for _ in range(rnd.randint(0, 3))
    )
    return "." + oid if rnd.random() < 0.3 else oid


def random_rule(rule_id: int, rnd: random.Random) -> Rule:
    severity = rnd.choice([None, None, None, 0, 2, 3, 5, 7])
    pick = rnd.random()
    if pick < 0.002:
        return rule(
            rule_id, rnd.choice(["contains", "regex"]), None, severity=rnd.randint(0, 7),
            priority=rnd.randint(1, 30),
        )  # fmt: skip
    if pick < 0.4:
        match_type, text, oid = "contains", " ".join(random_word(rnd) for _ in range(2)), None
        text = text.split()[0] if rnd.random() < 0.5 else text
    elif pick < 0.8:
        match_type, text, oid = "regex", random_regex(rnd), None
    else:
        match_type, text, oid = "oid_prefix", None, random_oid(rnd)
    # Few distinct priorities, so that many rules tie and ids decide.
    return rule(rule_id, match_type, text, trap_oid=oid, severity=severity,
                priority=rnd.randint(1, 60))  # fmt: skip


def random_event(rnd: random.Random) -> tuple[str, str | None, int | None]:
    words = [random_word(rnd) for _ in range(rnd.randint(2, 9))]
    words.insert(rnd.randint(0, len(words)), str(rnd.randint(0, 9999)))
    separator = rnd.choice([" ", " ", "  ", "-", "_"])
    oid = random_oid(rnd) if rnd.random() < 0.3 else None
    return separator.join(words), oid, rnd.choice([None, 0, 1, 2, 3, 4, 5, 6, 7])


def assert_agrees_with_naive(rules: list[Rule], events, *, all_candidates: int) -> int:
    """Compare the compiled winner for every event, and all candidates for the first few."""
    ruleset = compile_rules(rules)
    assert ruleset.errors == []
    ordered = sorted(rules, key=lambda r: (-r.priority, r.id))
    matched = 0
    for index, (message, oid, severity) in enumerate(events):
        expected = naive_matches(ordered, message, oid, severity)
        found = ruleset.match(message, oid, severity)
        if index < all_candidates:
            every = list(expected)
            assert found == (every[0] if every else None), (message, oid, severity)
            assert ruleset.candidates(message, oid, severity) == every, (message, oid, severity)
        else:
            assert found == next(expected, None), (message, oid, severity)
        matched += found is not None
    return matched


def test_ten_thousand_rules_agree_with_naive_reference():
    rnd = random.Random(2025)
    rules = [random_rule(rule_id, rnd) for rule_id in range(1, 10_001)]
    events = [random_event(rnd) for _ in range(2000)]
    matched = assert_agrees_with_naive(rules, events, all_candidates=300)
    assert 0.2 * len(events) < matched < len(events)  # the comparison exercised both outcomes


def test_small_rule_sets_agree_with_naive_reference():
    rnd = random.Random(7)
    for _ in range(200):
        rules = [random_rule(rule_id, rnd) for rule_id in rnd.sample(range(1, 99), 12)]
        events = [random_event(rnd) for _ in range(20)]
        assert_agrees_with_naive(rules, events, all_candidates=20)


def test_ten_thousand_literal_less_regexes_share_one_set():
    """Every regex here lacks a usable literal, so all 10,000 go into RE2 Sets: one anchored at the
    start for those starting with ^, one searching for the rest."""
    pairs = ["".join(p) for p in itertools.product(string.ascii_lowercase, repeat=2)]
    patterns = [
        rf"^{two}\d{{{n}}}$" if n % 2 else rf"{two}[0-9]{{{n}}}x"
        for two, n in itertools.product(pairs, range(1, 16))
    ][:10_000]
    rules = [rule(i, "regex", p, priority=1 + i % 997) for i, p in enumerate(patterns, 1)]
    ruleset = compile_rules(rules)
    assert all(unfiltered.set is not None for unfiltered in ruleset._unfiltered)
    rnd = random.Random(3)
    events = [
        (
            f"{rnd.choice(pairs)}{rnd.randint(0, 10 ** rnd.randint(1, 15))}{rnd.choice('xy')}",
            None,
            3,
        )
        for _ in range(200)
    ]
    assert assert_agrees_with_naive(rules, events, all_candidates=20) > 20


# --- degraded paths ------------------------------------------------------------------------------


def test_sets_that_fail_to_compile_fall_back_to_one_by_one(monkeypatch, caplog):
    tiny = re2.Options()
    tiny.log_errors = False
    tiny.max_mem = 1 << 10  # far too small for any Set
    monkeypatch.setattr(rules_compile, "_SET_OPTIONS", tiny)
    rnd = random.Random(11)
    rules = [random_rule(rule_id, rnd) for rule_id in range(1, 400)]
    with caplog.at_level(logging.WARNING, logger="mutt_app.rules.compile"):
        ruleset = compile_rules(rules)
    assert ruleset._literals.set is None and ruleset._oids.set is None
    assert "testing them one by one" in caplog.text
    events = [random_event(rnd) for _ in range(200)]
    assert_agrees_with_naive(rules, events, all_candidates=200)


def test_set_failing_at_search_time_falls_back_and_logs_once(caplog):
    class BrokenSet:
        def Match(self, data: bytes) -> list[int]:
            raise re2.error("simulated")

    rules = [rule(1, "regex", r"^\d+$"), rule(2, "contains", "link", priority=1)]
    ruleset = compile_rules(rules)
    ruleset._unfiltered[0].set = BrokenSet()  # the Set of regexes starting with ^
    with caplog.at_level(logging.ERROR, logger="mutt_app.rules.compile"):
        assert ruleset.match("12345").id == 1
        assert ruleset.match("link").id == 2
        assert ruleset.match("12345").id == 1
    assert caplog.text.count("RE2 set search failed") == 1


def test_lone_surrogate_in_an_event_does_not_break_matching():
    rules = [rule(1, "regex", "a.b"), rule(2, "contains", "x", priority=1)]
    assert winner(rules, "a\ud800b") == 1  # RE2 reads the surrogate's bytes as one character
    assert winner(rules, "\ud800x") == 2
    assert [r.id for r in compile_rules(rules).candidates("x\ud800", None, None)] == [2]
