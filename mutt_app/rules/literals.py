"""The required literals of a regex: text that every match of it contains.

A literal that every match of a regex contains lets the compiled rule set (:mod:`mutt_app.rules.compile`)
skip the regex for messages without it. Soundness is all that matters: when unsure the scanner
treats text as non-literal, which only makes literals shorter (or absent, sending the regex to the
Set of literal-less regexes). Only the top level of the pattern is read; groups and classes count as
"anything".
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# Shorter literals occur in so many messages that they would filter little and cost a regex run
# each time; such regexes go to the Set of literal-less regexes instead.
_MIN_LITERAL = 3

# What a short-reach pattern may repeat: a count up to this bound ("{n,}" has none), and without
# bound a digit, a space, a word or non-space character, or one literal character.
_MAX_REACH_COUNT = 16
_NARROW_LOOP = re.compile(r"(?:\\[dwsS]|(?<!\\)\w)[*+]")
_COUNTS = re.compile(r"\{(\d+)(,?)(\d*)\}")

_REPEAT = re.compile(r"\{(\d+)(?:,\d*)?\}")
_FLAG_GROUP = re.compile(r"\(\?([imsU]*)(?:-([imsU]*))?\)")

# Tokens: ("char", c, q) a literal character with quantifier q ("one", "opt": may be absent,
# "many": present, possibly repeated); ("other", "", q) anything else that consumes text;
# ("bar", "", "one") a top-level alternation; ("fold", "on" | "off" | "", "one") a flag group.
_Token = tuple[str, str, str]
Literal = tuple[str, bool]
"""A literal's text, and whether it matches case-insensitively (as under RE2's ``(?i)``)."""


def literal_runs(pattern: str) -> tuple[tuple[Literal, ...], ...] | None:
    """For each top-level branch of the RE2 ``pattern``, literals every match of it contains.

    A literal marked case-insensitive matches as under RE2's ``(?i)``. None when some branch has
    no literal of at least three characters. Assumes ``pattern`` compiles under RE2.
    """
    if "\\Q" in pattern:  # quoted text could hide parentheses; not worth parsing
        return None
    branches: list[tuple[Literal, ...]] = []
    found: list[Literal] = []
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


def leading_text(pattern: str) -> str:
    """Case-sensitive text that every match of the RE2 ``pattern`` starts with; "" when none is sure.

    A search for ``pattern`` can then start where that text first occurs: no match starts sooner.
    """
    tokens = _single_branch(pattern)
    text = ""
    for kind, value, quantifier in tokens or ():
        if kind != "char" or quantifier != "one":
            break
        text += value
    return text


def anchored_at_start(pattern: str) -> bool:
    """True when every match of the RE2 ``pattern`` starts at the start of the text (a leading ^)."""
    if not pattern.startswith("^"):
        return False
    tokens = _single_branch(pattern)
    return bool(tokens) and tokens[0] == ("other", "", "one")


def short_reach(pattern: str) -> bool:
    """True when the RE2 ``pattern`` repeats without a small bound (``*``, ``+``) only a digit, a
    space, a word or non-space character or one literal character (``\\d+``, ``\\S*``, ``x+``):
    no ``.*``, no ``{n,}``, no count over 16.

    A search thread of such a regex ends within a word or a number of where it started, so many
    such regexes share an RE2 Set without multiplying the states of its DFA as ``.*`` would. Only
    speed depends on this reading.
    """
    rest = _NARROW_LOOP.sub("", pattern)
    if "*" in rest or "+" in rest:
        return False
    for least, comma, most in _COUNTS.findall(pattern):
        if (comma and not most) or int(most or least) > _MAX_REACH_COUNT:
            return False
    return True


def starts_with_literal(pattern: str) -> bool:
    """True when every match of the RE2 ``pattern`` starts with a literal character, case-folded
    or not: its search threads start only where that character occurs."""
    for kind, _, quantifier in _single_branch(pattern) or ():
        if kind != "fold":
            return kind == "char" and quantifier == "one"
    return False


def _single_branch(pattern: str) -> list[_Token] | None:
    """The top-level tokens of ``pattern``; None if it has a top-level alternation or quoted text."""
    if "\\Q" in pattern:
        return None
    tokens = list(_tokens(pattern))
    return None if any(kind == "bar" for kind, _, _ in tokens) else tokens


def _usable(found: list[Literal]) -> tuple[Literal, ...]:
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
