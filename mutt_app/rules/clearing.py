"""Clearing rules: which rule's alerts clear which, and what a chain of them means.

A rule may name the rule it clears (``alert_rules.clears_rule_id``: LINK-UP clears LINK-DOWN); each
such link is a problem/clear pair that flap detection watches (:mod:`mutt_app.holdback.flapping`).

*Cycles are refused.* Rule A clearing B while B clears A, or a chain closed into a loop
(A clears B, B clears C, C clears A), has no problem side and no clear side: flap detection cannot
tell a transition from a repeat. Every write of ``clears_rule_id`` (REST API, admin form, a draft
stored or published) is checked with :func:`cycle_through` and refused (422) naming the loop.

*A chain is a series of pairs.* When C clears B and B clears A, there are two pairs, (A, B) and
(B, C), and the middle rule plays both parts: an event of B is the clear of A's pair and the
problem of B's pair (:func:`roles`). So a host bouncing between A and B flaps on pair A, one
bouncing between B and C flaps on pair B, each with its own flapping alert.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping


class ClearingCycle(ValueError):
    """A set of ``clears_rule_id`` links that closes into a loop (``cycle``: the rule ids, the first
    again at the end)."""

    def __init__(self, cycle: list[int]) -> None:
        self.cycle = cycle
        super().__init__(describe(cycle))


def describe(cycle: list[int]) -> str:
    """``[3, 5, 3]`` -> "clearing rules form a cycle: rule 3 clears rule 5, rule 5 clears rule 3"."""
    steps = ", ".join(f"rule {a} clears rule {b}" for a, b in itertools.pairwise(cycle))
    return f"clearing rules form a cycle: {steps}"


def cycle_through(links: Mapping[int, int | None], start: int) -> list[int] | None:
    """The loop of ``clears_rule_id`` links (rule id -> the rule it clears) that passes through
    ``start``, as rule ids from ``start`` back to it; None when following the links from ``start``
    ends (or enters a loop that does not pass through it)."""
    path = [start]
    seen = {start}
    current = links.get(start)
    while current is not None:
        path.append(current)
        if current == start:
            return path
        if current in seen:
            return None  # a loop further on, not through start: reported from its own rules
        seen.add(current)
        current = links.get(current)
    return None


def first_cycle(links: Mapping[int, int | None]) -> list[int] | None:
    """Any loop among ``links`` (the one through the lowest rule id that is in one), or None."""
    for start in sorted(links):
        found = cycle_through(links, start)
        if found is not None:
            return found
    return None


def check(links: Mapping[int, int | None], changed: Iterable[int]) -> None:
    """:class:`ClearingCycle` if a loop passes through any of the ``changed`` rules."""
    for rule_id in sorted(changed):
        found = cycle_through(links, rule_id)
        if found is not None:
            raise ClearingCycle(found)


def roles(links: Mapping[int, int | None]) -> dict[int, tuple[tuple[int, bool], ...]]:
    """Rule id -> its parts in problem/clear pairs, each (problem rule id, is the problem rule).

    ``links`` are the active rules' (rule id -> the rule it clears); a link to a rule not among them
    makes no pair. A middle rule of a chain has two parts: the clear of the rule it clears and the
    problem of the rule that clears it. Rules in a loop (left from before loops were refused) get
    no part, so flapping keeps no pair that has no problem side.
    """
    looped: set[int] = set()
    for start in links:
        found = cycle_through(links, start)
        if found is not None:
            looped.update(found)
    parts: dict[int, list[tuple[int, bool]]] = {}
    for rule_id, problem in sorted(links.items()):
        if problem is None or problem not in links or rule_id in looped or problem in looped:
            continue
        parts.setdefault(problem, []).append((problem, True))
        parts.setdefault(rule_id, []).append((problem, False))
    # A problem rule cleared by two rules is one problem part, not two.
    return {rule_id: tuple(dict.fromkeys(found)) for rule_id, found in parts.items()}
