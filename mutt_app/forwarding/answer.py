"""What Moog's answer to one batch says, alert by alert: taken, refused, or not known.

A 2xx status alone is not a delivery. The forward task reads the answer's body in the configured
MOOG_FORMAT and decides per alert:

- an empty body (202/204 with nothing said) with a 2xx other than 207: every alert was taken;
- a JSON object that reports no failed event: every alert was taken;
- a JSON object that refuses the request whole (REST LAM ``"success": false``; Cloud Events
  ``"status"`` ``error``, ``failed`` or ``failure``) with no per-event list: every alert refused;
- a list of failed events (``failed``, ``errors`` or ``failures``, at the top or under ``data``; for
  the Cloud Events API also ``data.mappingResults[i].errorMessage``): those alerts refused, each with
  its reason, the others taken. An entry names its event by ``index`` (its position in the request,
  or a bare integer), or by ``external_id`` (REST LAM), ``dedupe_key`` or ``tags.external_id``
  (Cloud); its reason is ``message``, ``error``, ``reason`` or ``errorMessage``;
- anything else (not JSON, not an object, a failed event that names no alert of the batch, a 207
  with no body): **unreadable**. Nothing is known of the batch's alerts, so none counts as sent;
  they are dead-lettered with the answer's start as the reason (see the forward task).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["Answer", "read_answer"]

_FAILED_LISTS = ("failed", "errors", "failures")
_REASON_KEYS = ("message", "error", "reason", "errorMessage")
_CLOUD_REFUSED = {"error", "failed", "failure"}
# How much of an unreadable answer goes into the delivery history and the dead letter.
SHOWN_CHARS = 300


@dataclass(frozen=True)
class Answer:
    """``kind``: ``taken`` (every alert), ``partial`` (``refused`` maps batch index to its
    reason), ``refused`` (the whole request, ``reason`` says why) or ``unreadable``."""

    kind: str
    refused: dict[int, str] = field(default_factory=dict)
    reason: str = ""


def read_answer(status: int, body: bytes, fmt: str, alerts: Sequence[dict[str, Any]]) -> Answer:
    """Read a 2xx answer with ``body`` to the request that carried ``alerts`` in format ``fmt``."""
    if not body.strip():
        if status == 207:  # a multi-status that names no status
            return Answer("unreadable", reason="207 with an empty body")
        return Answer("taken")
    shown = body[:SHOWN_CHARS].decode("utf-8", "replace")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Answer("unreadable", reason=f"not JSON: {shown}")
    if not isinstance(data, dict):
        return Answer("unreadable", reason=f"not a JSON object: {shown}")
    entries = _failed_entries(data, fmt)
    if entries is None:
        return Answer("unreadable", reason=f"a failed-events list that is not a list: {shown}")
    if not entries:
        if _refused_whole(data, fmt):
            return Answer("refused", reason=f"Moog answered {status} refusing the batch: {shown}")
        if status == 207:
            return Answer("unreadable", reason=f"207 naming no failed event: {shown}")
        return Answer("taken")
    refused: dict[int, str] = {}
    for item in entries:
        index = _index_of(item, fmt, alerts)
        if index is None:
            return Answer("unreadable", reason=f"a failed event that names no alert: {shown}")
        refused[index] = f"Moog answered {status}, refusing this event: {_reason_of(item)}"
    return Answer("partial", refused=refused)


def _failed_entries(data: dict[str, Any], fmt: str) -> list[Any] | None:
    """The reported failed events ([] if none), or None if the list is malformed."""
    inner = data.get("data") if isinstance(data.get("data"), dict) else {}
    for place in (data, inner):
        for name in _FAILED_LISTS:
            if name in place:
                value = place[name]
                return value if isinstance(value, list) else None
    results = inner.get("mappingResults") if fmt == "cloud" else None
    if isinstance(results, list):
        return [
            {"index": i, "message": r["errorMessage"]}
            for i, r in enumerate(results)
            if isinstance(r, dict) and r.get("errorMessage")
        ]
    return []


def _refused_whole(data: dict[str, Any], fmt: str) -> bool:
    if fmt == "cloud":
        return str(data.get("status", "")).lower() in _CLOUD_REFUSED or data.get("success") is False
    return data.get("success") is False


def _index_of(item: Any, fmt: str, alerts: Sequence[dict[str, Any]]) -> int | None:
    """The position in ``alerts`` of the event ``item`` names, or None."""
    if isinstance(item, int) and not isinstance(item, bool):
        return item if 0 <= item < len(alerts) else None
    if not isinstance(item, dict):
        return None
    index = item.get("index")
    if isinstance(index, int) and not isinstance(index, bool):
        return index if 0 <= index < len(alerts) else None
    tags = item.get("tags") if isinstance(item.get("tags"), dict) else {}
    wanted = item.get("external_id") or tags.get("external_id")
    for position, alert in enumerate(alerts):
        if wanted is not None and str(alert.get("external_id")) == str(wanted):
            return position
        key = item.get("dedupe_key")
        if fmt == "cloud" and key is not None and key == alert.get("signature"):
            return position
    return None


def _reason_of(item: Any) -> str:
    if isinstance(item, dict):
        for key in _REASON_KEYS:
            if item.get(key):
                return str(item[key])[:SHOWN_CHARS]
    return "no reason given"
