"""The compiled rule set's shortcuts give RE2's answers: a regex searched from where its fixed
leading text occurs, anchored when it starts with ``^``, or found directly among the literals when
it reaches only a few bytes; and, over the benchmark's own synthetic rule sets, the compiled
matcher agrees with the naive rule-by-rule reference."""

from __future__ import annotations

import random

import pytest
import re2

from bench import rules_bench
from mutt_app.rules import literals
from mutt_app.rules.compile import compile_rules
from tests.unit.test_rules import _random_regex, naive_matches, rule


@pytest.mark.parametrize(
    ("pattern", "lead", "anchored", "literal_start", "short"),
    [
        ("Interface.*down", "Interface", False, True, False),
        (r"%LINK-[0-7]-UPDOWN\b", "%LINK-", False, True, True),
        ("(?i)link (up|down)", "", False, True, True),
        (r"Gi\d+/\d+ down", "Gi", False, True, True),
        (r"ab+c", "a", False, True, True),
        (r"Gi\S+ down", "Gi", False, True, True),
        (r"Gi[^x]+ down", "Gi", False, True, False),
        (r"abc?d", "ab", False, True, True),
        (r"x\.y{2}z", "x.", False, True, True),
        (r"ab{2,}", "a", False, True, False),
        (r"ab{2,40}", "a", False, True, False),
        (r"^\d+$", "", True, False, True),
        (r"^\S+ a\[\d+\]: x", "", True, False, True),
        (r"^.*x", "", True, False, False),
        (r"^?abc", "", False, False, True),
        (r"^abc|def", "", False, False, True),
        ("foo|bar", "", False, False, True),
        (r"\QA|B\E", "", False, False, True),
        (r"\bword", "", False, False, True),
    ],
)
def test_pattern_forms_read_for_search_shortcuts(pattern, lead, anchored, literal_start, short):
    re2.compile(pattern)
    assert literals.leading_text(pattern) == lead
    assert literals.anchored_at_start(pattern) is anchored
    assert literals.starts_with_literal(pattern) is literal_start
    assert literals.short_reach(pattern) is short


def _texts(rnd: random.Random, sample: str) -> list[str]:
    """Texts around a sample a pattern matches: the sample alone, embedded, cut, and repeated."""
    cut = sample[: rnd.randint(0, len(sample))]
    return [
        sample,
        f"pre {sample} post",
        f"{cut} x {sample}",
        f"{cut}{cut} {sample[1:]}",
        f"{sample}{sample}",
        f"Kx{cut}",
    ]


def test_compiled_single_regexes_answer_as_re2_search():
    """Random patterns of every form the shortcuts read, on texts built to tempt them."""
    rnd = random.Random(5)
    shortcut = 0
    for _ in range(3000):
        pattern, sample = _random_regex(rnd)
        if rnd.random() < 0.2:
            pattern = "^" + pattern
        try:
            compiled = re2.compile(pattern)
        except re2.error:
            continue
        ruleset = compile_rules([rule(1, "regex", pattern)])
        if ruleset.errors:
            continue
        read = (
            literals.leading_text(pattern),
            literals.anchored_at_start(pattern),
            literals.short_reach(pattern),
            literals.starts_with_literal(pattern),
        )
        shortcut += any(read)
        for text in _texts(rnd, sample):
            expected = compiled.search(text) is not None
            assert (ruleset.match(text) is not None) is expected, (pattern, text, read)
            assert bool(ruleset.candidates(text)) is expected, (pattern, text, read)
    assert shortcut > 1000


@pytest.mark.parametrize("size", [60, 400])
def test_benchmark_rule_sets_agree_with_naive_reference(size):
    """The benchmark's rules and events (plus events that start with a rule's sample, which its
    anchored regexes match) get the naive reference's winner, and all its candidates."""
    rnd = random.Random(f"equivalence-{size}")
    rules, samples = rules_bench.build_rules(size, rnd)
    events = [
        (e.message, e.trap_oid, e.severity) for e in rules_bench.build_events(3000, samples, rnd)
    ]
    for kind, sample in samples:
        if kind == "regex":
            events.append((f"{sample} tail", None, rnd.choice([None, *range(8)])))
    ruleset = compile_rules(rules)
    assert ruleset.errors == []
    ordered = sorted(rules, key=lambda r: (-r.priority, r.id))
    outcomes: set[str] = set()
    for index, (message, oid, severity) in enumerate(events):
        expected = list(naive_matches(ordered, message, oid, severity))
        found = ruleset.match(message, oid, severity)
        assert found == (expected[0] if expected else None), (message, oid, severity)
        if index % 5 == 0:
            assert ruleset.candidates(message, oid, severity) == expected, (message, oid)
        outcomes.add("none" if found is None else found.match_type)
        if found is not None and found.syslog_severity is not None:
            outcomes.add("severity filter")
    assert outcomes >= {"none", "contains", "regex", "oid_prefix", "severity filter"}
