"""The audit batch as the text of PostgreSQL's ``COPY ... FROM STDIN`` (its default text format).

One line per row, the columns of :data:`COLUMNS` separated by tabs, ``\\N`` for NULL; a backslash,
tab, newline or carriage return inside a value is written as its backslash escape. Times are written
by orjson (RFC 3339, a naive time as UTC, as the JSON path writes them) and ``raw`` as JSON text.

Most batches hold no value with a tab, a newline or a NUL: the rows are formatted without looking at
their values, and the counts of tabs, newlines and NULL markers in the whole text prove it (any such
character inside a value would add to them). Only then are backslashes and carriage returns, which
cannot break a line, escaped over the whole text at once. A batch that fails the proof is written
line by line, the lines that fail it value by value (:func:`_escaped_line`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import orjson

COLUMNS = (
    "event_timestamp",
    "received_at",
    "hostname",
    "message",
    "source",
    "syslog_severity",
    "trap_oid",
    "matched_rule_id",
    "handling_decision",
    "team_assignment",
    "is_dev",
    "forwarded_to_moog",
    "correlation_id",
    "raw",
    "held_reason",
    "duplicate_of",
    "rules_version",
    "trace_id",
)
"""audit_row's keys, in the order of the COPY's column list (id and audited_at are the database's)."""

_TIMES = 2  # event_timestamp and received_at lead COLUMNS
_RAW = COLUMNS.index("raw")
_SEPARATORS = len(COLUMNS) - 1
_JSON = orjson.OPT_NAIVE_UTC
# A NULL's placeholder while the lines are built: no value holds a NUL (PostgreSQL's text cannot),
# and, unlike the marker \N, it survives the escaping of backslashes.
_NULL = "\x00"
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_SPECIAL = re.compile(r"[\\\t\n\r]")
_values = itemgetter(*COLUMNS)


def row_values(rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Each of ``rows`` (audit_row's dicts) as its values in :data:`COLUMNS` order; a key left
    out is None."""
    try:
        return list(map(_values, rows))
    except KeyError:
        return [tuple(row.get(name) for name in COLUMNS) for row in rows]


def copy_values(values: Sequence[tuple[Any, ...]]) -> str:
    """Rows given as their values in :data:`COLUMNS` order (``audit_values``' tuples) as COPY
    text, one line per row."""
    # All the batch's times in one call; orjson writes them with no character to escape.
    times = orjson.dumps([t for v in values for t in v[:_TIMES]], option=_JSON).decode()
    stamps = times[2:-2].split('","')
    if len(stamps) != _TIMES * len(values):
        return "".join(_escaped_line(v) for v in values)
    lines = [_line(v, stamps[_TIMES * n], stamps[_TIMES * n + 1]) for n, v in enumerate(values)]
    text = "".join(lines)
    nulls = sum([v.count(None) for v in values])
    if (
        text.count("\t") != _SEPARATORS * len(values)
        or text.count("\n") != len(values)
        or text.count(_NULL) != nulls
    ):
        return "".join(
            _finished(line) if _plain(line, v) else _escaped_line(v)
            for line, v in zip(lines, values, strict=True)
        )
    return _finished(text)


def _line(v: tuple[Any, ...], event_timestamp: str, received_at: str) -> str:
    # One f-string per row: a call per value would cost more than the rest of the line.
    (_, _, host, message, source, severity, oid, rule, handling, team, dev, forwarded, cid, raw,
     held, duplicate_of, version, trace) = v  # fmt: skip
    n = _NULL
    return (
        f"{event_timestamp}\t{received_at}\t{host}\t{message}\t{n if source is None else source}"
        f"\t{n if severity is None else severity}\t{n if oid is None else oid}"
        f"\t{n if rule is None else rule}\t{handling}\t{n if team is None else team}"
        f"\t{dev}\t{forwarded}\t{cid}"
        f"\t{n if raw is None else orjson.dumps(raw, option=_JSON).decode()}"
        f"\t{n if held is None else held}\t{n if duplicate_of is None else duplicate_of}"
        f"\t{n if version is None else version}\t{n if trace is None else trace}\n"
    )


def _plain(line: str, values: tuple[Any, ...]) -> bool:
    """Whether ``line`` holds no tab, newline or NUL but its own separators and NULLs."""
    return (
        line.count("\t") == _SEPARATORS
        and line.count("\n") == 1
        and line.count(_NULL) == values.count(None)
    )


def _finished(text: str) -> str:
    """Plain lines with their backslashes and carriage returns escaped and NULLs marked."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "\r" in text:
        text = text.replace("\r", "\\r")
    return text.replace(_NULL, "\\N")


def _escaped_line(values: tuple[Any, ...]) -> str:
    """One row's line, every value escaped on its own (a value holds a tab or a newline)."""
    fields = []
    for index, value in enumerate(values):
        if value is None:
            fields.append("\\N")
            continue
        if index < _TIMES or index == _RAW:
            value = orjson.dumps(value, option=_JSON).decode()
            if index < _TIMES:
                value = value.strip('"')
        fields.append(_SPECIAL.sub(_escape, str(value)))
    return "\t".join(fields) + "\n"


def _escape(match: re.Match[str]) -> str:
    return _ESCAPES[match.group()]
