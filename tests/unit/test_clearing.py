"""What clearing rules mean (mutt_app.rules.clearing): loops found and named, a chain's pairs."""

from __future__ import annotations

import pytest

from mutt_app.rules.clearing import ClearingCycle, check, cycle_through, first_cycle, roles


def test_loops_are_found_through_the_changed_rule_and_named() -> None:
    assert cycle_through({1: 2, 2: 1}, 1) == [1, 2, 1]
    assert cycle_through({1: 2, 2: 3, 3: 1}, 2) == [2, 3, 1, 2]
    assert cycle_through({1: 2, 2: 3, 3: None}, 1) is None  # a chain
    assert cycle_through({1: 2, 2: 3, 3: 2}, 1) is None  # a loop further on, not through 1
    assert first_cycle({1: 2, 2: 3, 3: 2}) == [2, 3, 2]
    with pytest.raises(ClearingCycle) as refused:
        check({5: 7, 7: 5, 9: None}, [9, 7])
    assert refused.value.cycle == [7, 5, 7]
    assert (
        str(refused.value)
        == "clearing rules form a cycle: rule 7 clears rule 5, rule 5 clears rule 7"
    )


def test_a_chain_is_a_series_of_pairs_and_its_middle_rule_plays_both_parts() -> None:
    # 2 clears 1, 3 clears 2; 4 also clears 1; 5 clears an inactive rule (not among the links).
    found = roles({1: None, 2: 1, 3: 2, 4: 1, 5: 99})
    assert found == {
        1: ((1, True),),
        2: ((1, False), (2, True)),
        3: ((2, False),),
        4: ((1, False),),
    }


def test_rules_in_a_loop_left_from_before_make_no_pair() -> None:
    assert roles({1: 2, 2: 1, 3: None, 4: 3}) == {3: ((3, True),), 4: ((3, False),)}
