"""Reading Moog's 2xx answer per alert, in both formats (the HTTP side: tests/e2e/test_moog_answers.py)."""

from __future__ import annotations

import orjson
import pytest

from mutt_app.forwarding.answer import read_answer

ALERTS = [{"external_id": f"id-{i}", "signature": f"host::1::m{i}"} for i in range(5)]


def _read(status: int, body: object, fmt: str = "rest_lam"):  # type: ignore[no-untyped-def]
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return read_answer(status, raw, fmt, ALERTS)


@pytest.mark.parametrize("status", [200, 202, 204])
def test_an_empty_2xx_takes_every_alert(status: int) -> None:
    assert _read(status, b"").kind == "taken"


def test_a_207_without_a_body_is_unreadable() -> None:
    assert _read(207, b"").kind == "unreadable"


def test_rest_lam_success_takes_every_alert() -> None:
    assert _read(200, {"success": True, "message": "Processed 5 event(s)"}).kind == "taken"


def test_rest_lam_success_false_refuses_the_batch_whole() -> None:
    answer = _read(200, {"success": False, "message": "no"})
    assert answer.kind == "refused" and '"no"' in answer.reason


def test_failed_events_by_index_or_external_id_are_refused_with_their_reason() -> None:
    answer = _read(207, {"failed": [{"index": 1, "message": "bad"}, {"external_id": "id-3"}]})
    assert answer.kind == "partial"
    assert sorted(answer.refused) == [1, 3]
    assert "bad" in answer.refused[1] and "no reason given" in answer.refused[3]


def test_cloud_failures_by_dedupe_key_or_mapping_results() -> None:
    by_key = _read(200, {"status": "partial", "errors": [{"dedupe_key": "host::1::m4"}]}, "cloud")
    assert by_key.kind == "partial" and list(by_key.refused) == [4]
    results = [{"errorMessage": ""}, {"errorMessage": "no source"}] + [{}] * 3
    mapped = _read(200, {"status": "success", "data": {"mappingResults": results}}, "cloud")
    assert mapped.kind == "partial" and list(mapped.refused) == [1]
    assert "no source" in mapped.refused[1]
    assert _read(200, {"status": "error", "message": "x"}, "cloud").kind == "refused"
    assert _read(202, {"status": "success", "data": {}}, "cloud").kind == "taken"


@pytest.mark.parametrize(
    "body",
    [
        b"<html>log in</html>",
        b"[1, 2]",
        b'"OK"',
        b'{"failed": "some"}',
        b'{"failed": [{"index": 9}]}',
        b'{"failed": [{"external_id": "not-in-batch"}]}',
    ],
)
def test_an_answer_that_cannot_be_read_is_unreadable(body: bytes) -> None:
    assert _read(200, body).kind == "unreadable"


def test_a_207_naming_no_failed_event_is_unreadable() -> None:
    assert _read(207, {"success": True}).kind == "unreadable"
