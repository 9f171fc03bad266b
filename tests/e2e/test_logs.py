"""Logs of real processes: JSON lines with the spec's fields, one event followed by its correlation_id
from ingest through classify to forward, and no secret anywhere in any process's output."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tests.e2e.conftest import StackFactory
from tests.factories import seed_pipeline

SPEC_FIELDS = {
    "timestamp", "level", "message", "logger", "module", "function", "line", "thread",
    "service", "version", "pod_name", "correlation_id", "task_id",
}  # fmt: skip
SECRETS = {
    "INGEST_API_KEY": "ingest-key-Zq81",
    "MOOG_API_KEY": "moog-key-Hx27",
    "WEBUI_API_KEY": "webui-key-Pp09",
    "DB_PASS": "db-pass-Wm45",
    "WEBUI_SECRET_KEY": "cookie-secret-Ty63",
}


def _json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_one_event_is_followed_by_its_correlation_id_and_no_secret_is_logged(
    make_stack: StackFactory,
) -> None:
    # DEBUG: ingest logs each accepted request at that level.
    stack = make_stack(LOG_JSON_ENABLED="true", LOG_LEVEL="DEBUG", **SECRETS)
    seed_pipeline(stack.engine)  # rule 1 forwards "CRITICAL ..." (Page_and_ticket)
    with stack.together():
        stack.start_sink().start_ingest()
        stack.start_worker()
    event = {
        "timestamp": datetime.now(UTC).isoformat(),
        "hostname": "router-01",
        "message": "CRITICAL power supply failed",
    }
    refused = stack.post(json.dumps(event), **{"X-API-Key": "wrong-key"})
    assert refused.status_code == 401
    answer = stack.post(json.dumps(event), **{"X-API-Key": SECRETS["INGEST_API_KEY"]})
    assert answer.status_code == 200, answer.text
    [cid] = answer.json()["correlation_ids"]
    stack.wait_sink(1)
    stack.settle(1.0)

    texts = {name: p.log_path.read_text(errors="replace") for name, p in stack.processes.items()}
    ingest, worker = _json_lines(texts["ingest"]), _json_lines(texts["worker"])
    assert ingest and worker
    for record in ingest + worker:
        assert record.keys() >= SPEC_FIELDS, record
        assert record["version"] == "2.5.0"
        datetime.fromisoformat(record["timestamp"])
    assert {r["service"] for r in ingest} == {"mutt-ingest"}
    assert {r["service"] for r in worker} == {"mutt-worker"}

    mine = [r for r in ingest + worker if r["correlation_id"] == cid]
    by_logger = {r["logger"]: r for r in mine}
    assert {
        "mutt_app.web.ingest.endpoint",
        "mutt_app.tasks.classify",
        "mutt_app.tasks.forward",
    } <= set(by_logger), mine
    assert by_logger["mutt_app.web.ingest.endpoint"]["task_id"] is None
    classify_task = by_logger["mutt_app.tasks.classify"]["task_id"]
    forward_task = by_logger["mutt_app.tasks.forward"]["task_id"]
    assert classify_task and forward_task and classify_task != forward_task
    assert "delivered" in by_logger["mutt_app.tasks.forward"]["message"]
    # Celery's own lines about those tasks carry the same task ids.
    assert any(r["task_id"] == forward_task and r["logger"].startswith("celery") for r in worker)

    for name, text in texts.items():
        for setting, secret in SECRETS.items():
            assert secret not in text, f"{setting} appears in the {name} log"


def test_plain_logs_are_readable_lines_with_the_ids(make_stack: StackFactory) -> None:
    stack = make_stack(LOG_LEVEL="DEBUG")  # ingest logs each accepted request at DEBUG
    with stack.together():
        stack.start_sink().start_ingest()
        stack.start_worker()
    event = {"timestamp": datetime.now(UTC).isoformat(), "hostname": "h", "message": "m"}
    answer = stack.post(json.dumps(event))
    [cid] = answer.json()["correlation_ids"]
    stack.wait_audited(1)
    stack.settle(0.5)
    ingest = stack.processes["ingest"].log_path.read_text()
    worker = stack.processes["worker"].log_path.read_text()
    assert not _json_lines(ingest)
    [line] = [x for x in ingest.splitlines() if "accepted 1 events" in x]
    assert (
        f"mutt-ingest mutt_app.web.ingest.endpoint: accepted 1 events, 0 rejected [correlation_id={cid}]"
        in line
    )
    [line] = [x for x in worker.splitlines() if "mutt_app.tasks.classify: batch" in x]
    assert f"correlation_id={cid} task_id=" in line
