"""The message normaliser behind deduplication: what is masked, what is kept."""

from __future__ import annotations

import pytest

from mutt_app.events.fingerprint import fingerprint, template


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        # counters and standalone numbers
        ("Interface Gi0/1 changed state to down (flap 1041)",
         "Interface Gi0/1 changed state to down (flap <n>)"),
        ("count=42 took 35ms at 99% load", "count=<n> took <n> at <n> load"),
        ("temperature 45.5 C", "temperature <n> C"),
        ("hold time 180s expired", "hold time <n> expired"),
        # timestamps and times of day
        ("at 2026-12-01T10:15:30.123Z link down", "at <ts> link down"),
        ("at 2026-12-01 10:15:30+01:00 link down", "at <ts> link down"),
        ("Dec  1 10:15:30 core-sw-01 link down", "<ts> core-sw-01 link down"),
        ("*Mar  1 00:01:02.345: %SYS-5-CONFIG_I", "*<ts>: %SYS-5-CONFIG_I"),
        ("uptime reset at 10:15:30", "uptime reset at <time>"),
        # addresses
        ("BGP neighbor 10.1.2.3 Down", "BGP neighbor <ip> Down"),
        ("route 10.0.0.0/8 withdrawn", "route <ip> withdrawn"),
        ("peer 10.0.0.1: down", "peer <ip>: down"),
        ("from fe80::1ff:fe23:4567:890a: link down", "from <ip>: link down"),
        ("addr 2001:db8::1/64 duplicate", "addr <ip> duplicate"),
        ("mapped ::ffff:10.0.0.1 seen", "mapped <ip> seen"),
        ("mac 00:1a:2b:3c:4d:5e moved", "mac <mac> moved"),
        ("mac 00-1A-2B-3C-4D-5E moved", "mac <mac> moved"),
        ("mac 001a.2b3c.4d5e moved", "mac <mac> moved"),
        # ids
        ("job 550e8400-E29B-41d4-a716-446655440000 done", "job <uuid> done"),
        ("error 0xDEADBEEF in a3f5c9e1d2b4", "error <hex> in <hex>"),
        # whitespace
        ("  link   down\t now ", "link down now"),
    ],
)  # fmt: skip
def test_volatile_parts_are_masked(message: str, expected: str) -> None:
    assert template(message) == expected


@pytest.mark.parametrize(
    "message",
    [
        "%LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed state to down",
        "eth0 LINK-DOWN on Te1/0/48",
        "IOS version 15.2.4 loaded",
        "999.1.1.1 is not an address",
        "ratio 1:2:3 and a:b:c stay",
        "deadbeef is a word, not an id",  # 8 hex letters without a digit
    ],
)
def test_identifiers_are_kept(message: str) -> None:
    assert template(message) == message


def test_fingerprint_groups_repeats_and_separates_hosts_rules_and_interfaces() -> None:
    base = fingerprint("core-sw-01", 7, "Interface Gi0/1 changed state to down (flap 1)")
    assert base == fingerprint("CORE-SW-01", 7, "Interface Gi0/1 changed state to down (flap 2)")
    assert base != fingerprint("core-sw-02", 7, "Interface Gi0/1 changed state to down (flap 1)")
    assert base != fingerprint("core-sw-01", 8, "Interface Gi0/1 changed state to down (flap 1)")
    assert base != fingerprint("core-sw-01", 7, "Interface Gi0/2 changed state to down (flap 1)")
    assert base != fingerprint("core-sw-01", None, "Interface Gi0/1 changed state to down (flap 1)")
    assert len(base) == 32
