"""The message normalisers: the grouping template (unhandled templates, storm summaries) masks every
address and number; deduplication's incident template and default fingerprint keep what names the
thing that failed (addresses, numbered identities) and the severity, and mask what varies between
repeats of one incident."""

from __future__ import annotations

import pytest

from mutt_app.events import fingerprint as fingerprint_module
from mutt_app.events.fingerprint import fingerprint, incident_template, template


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
def test_the_grouping_template_masks_volatile_parts_addresses_and_numbers(
    message: str, expected: str
) -> None:
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
    assert incident_template(message) == message


def test_fingerprint_groups_repeats_and_separates_hosts_rules_and_interfaces() -> None:
    down = "Interface Gi0/1 changed state to down (flap {})"
    base = fingerprint("core-sw-01", 7, down.format(1), 3)
    assert base == fingerprint("CORE-SW-01", 7, down.format(2), 3)
    assert base != fingerprint("core-sw-02", 7, down.format(1), 3)
    assert base != fingerprint("core-sw-01", 8, down.format(1), 3)
    assert base != fingerprint("core-sw-01", 7, down.replace("Gi0/1", "Gi0/2").format(1), 3)
    assert base != fingerprint("core-sw-01", None, down.format(1), 3)
    assert len(base) == 32


def _same_incident(first: str, second: str, severity: int | None = 3) -> bool:
    return fingerprint("r1", 7, first, severity) == fingerprint("r1", 7, second, severity)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("BGP peer 10.0.0.1 down", "BGP peer 10.0.0.2 down"),
        ("BGP neighbor 10.1.2.3 Down: hold time expired", "BGP neighbor 10.1.2.4 Down: hold time expired"),
        ("route 10.0.0.0/8 withdrawn", "route 10.0.0.0/16 withdrawn"),
        ("from fe80::1ff:fe23:4567:890a: link down", "from fe80::1ff:fe23:4567:890b: link down"),
        ("addr 2001:db8::1/64 duplicate", "addr 2001:db8::2/64 duplicate"),
        ("mac 00:1a:2b:3c:4d:5e moved", "mac 00:1a:2b:3c:4d:5f moved"),
        ("mac 001a.2b3c.4d5e moved", "mac 001a.2b3c.4d5f moved"),
        ("CRITICAL power supply 1 failed", "CRITICAL power supply 2 failed"),
        ("PSU 1 failed", "PSU 2 failed"),
        ("Power Supply #1 failed", "Power Supply #2 failed"),
        ("BGP peer 1 down", "BGP peer 2 down"),
        ("card in slot 3 removed", "card in slot 4 removed"),
        ("vlan 100 spanning tree loop", "vlan 200 spanning tree loop"),
        ("module 4 offline", "module 5 offline"),
        ("Fan 2 failed", "Fan 3 failed"),
        ("fan tray 1 failed", "fan tray 2 failed"),
        ("port 3 err-disabled", "port 4 err-disabled"),
        ("stack member 2 removed", "stack member 3 removed"),
        ("tunnel 10 down", "tunnel 11 down"),
        ("lane 0 rx loss of signal", "lane 1 rx loss of signal"),
        ("port-channel 5 down", "port-channel 6 down"),
    ],
)  # fmt: skip
def test_alerts_that_differ_in_an_address_or_a_numbered_identity_are_different_incidents(
    first: str, second: str
) -> None:
    assert not _same_incident(first, second)
    assert template(first) == template(second)  # grouping still sees "what repeats"


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("CPU at 93%", "CPU at 95%", "CPU at <n>"),
        ("CPU 1 at 93%", "CPU 1 at 95%", "CPU 1 at <n>"),
        ("power supply 1 at 93% load", "power supply 1 at 95% load", "power supply 1 at <n> load"),
        ("Interface Gi0/1 changed state to down (flap 1041)",
         "Interface Gi0/1 changed state to down (flap 1042)",
         "Interface Gi0/1 changed state to down (flap <n>)"),
        ("BGP peer 10.0.0.1 down after 35ms", "BGP peer 10.0.0.1 down after 180ms",
         "BGP peer 10.0.0.1 down after <n>"),
        ("hold time 180s expired", "hold time 90s expired", "hold time <n> expired"),
        ("link down for 12.5 sec", "link down for 3 sec", "link down for <n> sec"),
        ("fan 2 at 3000 rpm", "fan 2 at 3100 rpm", "fan 2 at <n> rpm"),
        ("at 2026-12-01T10:15:30.123Z link down", "at 2026-12-02T11:00:00Z link down",
         "at <ts> link down"),
        ("Dec  1 10:15:30 link down", "Dec  2 11:15:30 link down", "<ts> link down"),
        ("job 550e8400-e29b-41d4-a716-446655440000 failed",
         "job 650e8400-e29b-41d4-a716-446655440001 failed", "job <uuid> failed"),
        ("error 0xDEADBEEF in a3f5c9e1d2b4", "error 0xCAFE in b3f5c9e1d2b4", "error <hex> in <hex>"),
    ],
)  # fmt: skip
def test_what_varies_between_repeats_of_one_incident_stays_masked(
    first: str, second: str, expected: str
) -> None:
    assert incident_template(first) == incident_template(second) == expected
    assert _same_incident(first, second)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("addr 2001:DB8:0::1/64 duplicate", "addr 2001:db8::1/64 duplicate"),
        ("mac 00-1A-2B-3C-4D-5E moved", "mac 00-1a-2b-3c-4d-5e moved"),
        ("peer 10.0.0.1: down", "peer 10.0.0.1: down"),
        ("  power   supply 1\tfailed ", "power supply 1 failed"),
    ],
)
def test_the_incident_template_spells_one_address_one_way(message: str, expected: str) -> None:
    assert incident_template(message) == expected


def test_a_severity_escalation_is_a_new_incident() -> None:
    message = "%BGP-3-NOTIFICATION: peer 10.0.0.1 hold time expired"
    assert fingerprint("r1", 7, message, 3) != fingerprint("r1", 7, message, 2)
    assert fingerprint("r1", 7, message, None) != fingerprint("r1", 7, message, 3)
    assert _same_incident(message, message, 2)


@pytest.mark.parametrize(
    "message",
    [
        "BGP neighbor 10.0.0.1 Down: hold time expired (flap 1041)",
        "Interface Gi0/1 changed state to down " * 40,  # longer than the templates kept
    ],
)
def test_a_remembered_template_is_the_template_made_afresh(message: str) -> None:
    for keep_identities, made in ((False, template), (True, incident_template)):
        fresh = fingerprint_module._normalise(message, keep_identities=keep_identities)
        assert made(message) == made(message) == fresh
