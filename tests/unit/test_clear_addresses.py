"""ClearAddresses: the ingest endpoint's memory of addresses the bad-key throttle found clear."""

from __future__ import annotations

import time

from mutt_app.web.throttle import ClearAddresses


def test_an_address_found_clear_is_fresh_until_its_ttl_passes() -> None:
    clear = ClearAddresses(ttl=0.05)
    assert not clear.fresh("192.0.2.1")
    clear.remember("192.0.2.1")
    assert clear.fresh("192.0.2.1")
    clear.forget("192.0.2.1")
    assert not clear.fresh("192.0.2.1")


def test_when_the_ttl_passes_only_the_first_asker_goes_to_the_throttle() -> None:
    clear = ClearAddresses(ttl=0.05)
    clear.remember("192.0.2.1")
    time.sleep(0.06)
    # Thirty-two request threads at the moment the second runs out: one asks Redis, not all.
    answers = [clear.fresh("192.0.2.1") for _ in range(32)]
    assert answers == [False] + [True] * 31
    # That asker found it throttled: everyone asks again.
    clear.forget("192.0.2.1")
    assert not clear.fresh("192.0.2.1")


def test_the_memory_keeps_at_most_cap_addresses() -> None:
    clear = ClearAddresses(ttl=60, cap=3)
    for n in range(5):
        clear.remember(f"192.0.2.{n}")
    assert [clear.fresh(f"192.0.2.{n}") for n in range(5)] == [False, False, True, True, True]
