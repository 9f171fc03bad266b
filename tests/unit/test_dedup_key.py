"""A rule's own dedup key: which parts it may name, what each part's value is, and that the default
key is the default fingerprint."""

from __future__ import annotations

import pytest
import re2

from mutt_app.db.models import AlertRule
from mutt_app.events.fingerprint import fingerprint
from mutt_app.rules.dedup_key import DEFAULT, DedupKey, DedupKeyError, parse
from mutt_app.rules.snapshot import compile_dedup_key, dedup_keys
from mutt_app.rules.validate import RuleError, validate_rule_mapping

PEER_RULE = r"BGP peer (?P<peer>\S+) (?P<state>down|up)"
RULE = {
    "match_type": "regex",
    "match_string": PEER_RULE,
    "trap_oid": None,
    "syslog_severity": None,
    "priority": 100,
    "prod_handling": "Page_and_ticket",
    "dev_handling": "Log_only",
    "team_assignment": "NETO",
}


def test_the_default_key_is_the_default_fingerprint() -> None:
    message = "BGP peer 10.0.0.1 down after 35ms"
    assert DEFAULT.text == "host, severity, template"
    assert DEFAULT.fingerprint(7, "R1", message, 3) == fingerprint("r1", 7, message, 3)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("host", ("host",)),
        (" Host ,severity, masked ", ("host", "severity", "masked")),
        ("host, field:ifIndex, group:peer", ("host", "field:ifIndex", "group:peer")),
        ("message", ("message",)),
    ],
)
def test_a_key_is_read_into_its_parts(text: str, parts: tuple[str, ...]) -> None:
    assert parse(text, ("peer", "state")) == parts


@pytest.mark.parametrize(
    ("text", "groups", "error"),
    [
        ("host, peer", ("peer",), "unknown part 'peer'"),
        ("host,,template", None, "unknown part ''"),
        ("field:", None, "unknown part 'field:'"),
        ("host, host", None, "names host more than once"),
        ("group:peer", None, "group:peer needs a regex rule"),
        ("group:neighbor", ("peer", "state"), "has no group named 'neighbor' (its named groups: peer, state)"),
        (" , ", None, "names no part"),
        ("host," * 9, None, "at most 8"),
        ("field:" + "x" * 200, None, "at most 200 (MAX_DEDUP_KEY_CHARS)"),
    ],
)  # fmt: skip
def test_a_key_naming_unknown_parts_is_refused_with_the_parts_it_may_name(
    text: str, groups: tuple[str, ...] | None, error: str
) -> None:
    with pytest.raises(DedupKeyError, match=re2.escape(error)):
        parse(text, groups)


def test_the_rule_check_refuses_a_key_the_rule_cannot_have() -> None:
    validate_rule_mapping({**RULE, "dedup_key": "host, group:peer"})
    validate_rule_mapping({**RULE, "dedup_key": None})
    with pytest.raises(RuleError, match="no group named 'vrf'"):
        validate_rule_mapping({**RULE, "dedup_key": "group:vrf"})
    contains = {**RULE, "match_type": "contains", "match_string": "BGP peer"}
    with pytest.raises(RuleError, match="needs a regex rule"):
        validate_rule_mapping({**contains, "dedup_key": "group:peer"})


def test_each_part_takes_its_value_from_the_alert() -> None:
    key = compile_dedup_key(
        "host, severity, template, masked, message, field:ifIndex, field:tags, group:peer",
        "regex",
        PEER_RULE,
    )
    message = "BGP peer 10.0.0.1 down after 35ms"
    raw = {"ifIndex": 12, "tags": {"b": 1, "a": "x"}}
    assert key.values("Core-1", message, 3, raw) == [
        ("host", "core-1"),
        ("severity", "3"),
        ("template", "BGP peer 10.0.0.1 down after <n>"),
        ("masked", "BGP peer <ip> down after <n>"),
        ("message", message),
        ("field:ifIndex", "12"),
        ("field:tags", '{"a":"x","b":1}'),
        ("group:peer", "10.0.0.1"),
    ]
    # A missing field, no severity, a message the regex does not match: no value, not an error.
    assert [value for _, value in key.values("core-1", "other", None, {})][-3:] == [
        None,
        None,
        None,
    ]


def test_a_rules_key_merges_and_splits_as_it_says() -> None:
    by_peer = compile_dedup_key("host, group:peer", "regex", PEER_RULE)
    one = by_peer.fingerprint(7, "r1", "BGP peer 10.0.0.1 down after 35ms", 3)
    assert one == by_peer.fingerprint(7, "r1", "BGP peer 10.0.0.1 up after 90ms", 2)
    assert one != by_peer.fingerprint(7, "r1", "BGP peer 10.0.0.2 down after 35ms", 3)
    assert one != by_peer.fingerprint(8, "r1", "BGP peer 10.0.0.1 down after 35ms", 3)
    any_peer = DedupKey(parse("host, masked", None))
    assert any_peer.fingerprint(7, "r1", "BGP peer 10.0.0.1 down", 3) == any_peer.fingerprint(
        7, "r1", "BGP peer 10.0.0.2 down", 2
    )
    by_index = DedupKey(parse("host, field:ifIndex", None))
    assert by_index.fingerprint(7, "r1", "a", 3, {"ifIndex": 1}) != by_index.fingerprint(
        7, "r1", "a", 3, {"ifIndex": "1"}
    )


def test_a_stored_key_that_does_not_compile_falls_back_to_the_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows = [
        AlertRule(id=1, **RULE, dedup_key="host, group:peer"),
        AlertRule(id=2, **RULE, dedup_key="group:gone"),  # only raw SQL could store this
        AlertRule(id=3, **RULE, dedup_key=None),
    ]
    keys, errors = dedup_keys(rows)
    assert keys[1].parts == ("host", "group:peer")
    assert set(keys) == {1}
    assert [rule for rule, _ in errors] == [2]
    assert "rule 2: dedup_key 'group:gone' ignored, the default key applies" in caplog.text
