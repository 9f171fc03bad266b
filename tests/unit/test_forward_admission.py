"""Which alerts may be forwarded (mutt_app.forwarding.admission): each refusal says why."""

from __future__ import annotations

import pytest

from mutt_app.forwarding import admission


@pytest.mark.parametrize(
    ("alert", "kind", "words"),
    [
        ({"description": "x"}, "MalformedAlert", "neither an external_id nor a signature"),
        ({"external_id": "", "signature": " "}, "MalformedAlert", "neither"),
        ("not an object", "MalformedAlert", "JSON object"),
        ({"signature": "s", "severity": 9}, "MalformedAlert", "severity"),
        ({"signature": "s", "severity": True}, "MalformedAlert", "severity"),
        ({"signature": "s", "description": 5}, "MalformedAlert", "description must be a string"),
        ({"signature": "s", "description": "x" * 2000}, "AlertTooLarge", "MOOG_MAX_ALERT_BYTES"),
    ],
)
def test_an_alert_that_cannot_be_forwarded_says_why(alert: object, kind: str, words: str) -> None:
    found = admission.problem(alert, 1024)
    assert found is not None and found[0] == kind and words in found[1]


def test_a_well_formed_alert_passes() -> None:
    alert = {"signature": "core-1::x", "external_id": "e1", "severity": 0, "description": "up"}
    assert admission.problem(alert, 1024) is None
    assert admission.idempotency_key({"signature": "core-1::x"}) == "core-1::x"
