"""The audit batch's COPY text: the quick path (whole-batch escaping) writes what escaping each
value on its own writes, whatever the values hold."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from mutt_app.classify import audit_copy
from mutt_app.classify.audit_copy import COLUMNS, copy_values, row_values


def _row(**fields: object) -> dict:
    row: dict = {
        "event_timestamp": datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC),
        "received_at": datetime(2026, 12, 1, 10, 0, 1, tzinfo=UTC),
        "hostname": "router-1",
        "message": "Interface Gi0/1 down",
        "source": "rsyslog",
        "syslog_severity": 3,
        "trap_oid": None,
        "matched_rule_id": 7,
        "handling_decision": "Log_only",
        "team_assignment": "NETO",
        "is_dev": False,
        "forwarded_to_moog": True,
        "correlation_id": "0b7f6f3e-8a43-4a3b-9d0e-1f2a3b4c5d6e",
        "raw": {"program": "ios", "quote": 'say "hi"'},
        "held_reason": None,
        "duplicate_of": None,
        "rules_version": 12,
        "trace_id": None,
    }
    row.update(fields)
    return row


def copy_text(rows: list[dict]) -> str:
    """audit_row's dicts (a key left out is NULL) as COPY text, as insert_audit_rows writes them."""
    return copy_values(row_values(rows))


def _one_by_one(rows: list[dict]) -> str:
    return "".join(audit_copy._escaped_line(tuple(r.get(c) for c in COLUMNS)) for r in rows)


def test_a_plain_row_is_one_tab_separated_line_with_null_markers() -> None:
    line = copy_text([_row()])
    fields = line.removesuffix("\n").split("\t")
    assert len(fields) == len(COLUMNS)
    values = dict(zip(COLUMNS, fields, strict=True))
    assert values["event_timestamp"] == "2026-12-01T10:00:00.123456+00:00"
    assert values["trap_oid"] == values["held_reason"] == "\\N"
    assert (values["is_dev"], values["forwarded_to_moog"]) == ("False", "True")
    # raw's JSON escapes its quotes with backslashes, which COPY in turn escapes.
    assert values["raw"] == '{"program":"ios","quote":"say \\\\"hi\\\\""}'


def test_a_naive_time_is_written_as_utc() -> None:
    line = copy_text([_row(event_timestamp=datetime(2026, 12, 1, 10, 0))])
    assert line.startswith("2026-12-01T10:00:00+00:00\t")


def test_a_key_left_out_is_null() -> None:
    row = _row()
    del row["trace_id"], row["rules_version"]
    assert copy_text([row]).endswith("\t\\N\t\\N\n")


def test_a_value_spelled_like_the_null_marker_is_kept_as_text() -> None:
    assert "\t\\\\N\t" in copy_text([_row(source="\\N")])


def test_a_missing_required_value_is_null_not_the_word_none() -> None:
    fields = copy_text([_row(hostname=None)]).split("\t")
    assert fields[COLUMNS.index("hostname")] == "\\N"


_TEXT = st.text(st.sampled_from(["a", " ", "\\", "\t", "\n", "\r", "N", '"', "é", "\u2028"]))


@given(st.lists(st.tuples(_TEXT, _TEXT, st.none() | _TEXT), min_size=1, max_size=5))
@settings(max_examples=300, deadline=None)
def test_the_quick_path_writes_what_escaping_each_value_writes(values: list[tuple]) -> None:
    rows = [
        _row(
            hostname=host,
            message=message,
            team_assignment=team,
            correlation_id=str(uuid.uuid4()),
            raw={"message": message},
        )
        for host, message, team in values
    ]
    assert copy_text(rows) == _one_by_one(rows)


def test_rows_given_as_values_are_written_as_their_dicts_are() -> None:
    # Classify hands copy_values audit_values' tuples; insert_audit_rows the dicts of audit_row.
    plain, missing = _row(), _row(message="tab\there, back\\slash", team_assignment=None)
    del missing["trace_id"]
    rows = [plain, missing]
    assert copy_values(row_values(rows)) == _one_by_one(rows)
    assert row_values([missing])[0][-1] is None
