"""Hostile input on real processes (gunicorn ingest, Celery worker, PostgreSQL audit).

No accepted event is lost, and no client is hurt by another client's body: an item that cannot be
stored is its sender's per-item rejection, a body over MAX_INGEST_BODY_BYTES is a 413 whatever its
framing, and NUL characters never reach PostgreSQL.
"""

from __future__ import annotations

import gzip
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest
import redis
import requests

from mutt_app.ledger import BATCHES
from mutt_app.tasks.classify import QUEUE
from tests.e2e.conftest import StackFactory
from tests.factories import posted_event

NOW = datetime.now(UTC).isoformat()
CAP = 256 * 1024  # MAX_INGEST_BODY_BYTES of these stacks
DEEP = b"[" * 300 + b"]" * 300  # orjson reads up to 1024 levels but writes only 254
JSON = {"Content-Type": "application/json"}


def _chunks(body: bytes, size: int = 16 * 1024) -> Iterator[bytes]:
    """The body as a generator: requests sends it with Transfer-Encoding: chunked."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _accepted_anything(client: redis.Redis) -> bool:
    return bool(client.llen(QUEUE) or client.zcard(f"{BATCHES}:index"))


def test_a_chunked_body_over_the_cap_is_413_and_nothing_of_it_is_accepted(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(MAX_INGEST_BODY_BYTES=str(CAP))
    stack.start_ingest()  # no worker: whatever is accepted stays in the queue to be seen
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    lines = b"".join(
        orjson.dumps(posted_event(f"event {i}", timestamp=NOW)) + b"\n" for i in range(8000)
    )
    assert len(lines) > 2 * CAP

    response = requests.post(stack.ingest_url, data=_chunks(lines), timeout=30)
    assert response.status_code == 413, response.text[:300]
    # The decompressed size too: a small chunked gzip body that inflates past the cap.
    packed = gzip.compress(lines)
    assert len(packed) < CAP
    headers = {"Content-Encoding": "gzip"}
    response = requests.post(stack.ingest_url, data=_chunks(packed), headers=headers, timeout=30)
    assert response.status_code == 413, response.text[:300]
    assert not _accepted_anything(client)

    # Under the cap, chunked is read whole.
    fits = lines[: lines.index(b"\n", CAP // 2) + 1]
    response = requests.post(stack.ingest_url, data=_chunks(fits), timeout=30)
    assert response.status_code == 200, response.text[:300]
    assert response.json()["accepted"] == fits.count(b"\n")
    assert response.json()["rejected"] == []


def test_nul_characters_are_rejected_and_never_reach_postgresql(make_stack: StackFactory) -> None:
    stack = make_stack()
    with stack.together():
        stack.start_ingest()
        stack.start_worker()
    body = [
        posted_event("clean", timestamp=NOW),
        posted_event("link\x00down", timestamp=NOW),
        posted_event("fine", vendor={"note": "nul \x00 inside"}, timestamp=NOW),
        posted_event("also clean", **{"key\x00": 1}, timestamp=NOW),
    ]
    response = stack.post(orjson.dumps(body), **JSON)
    assert response.status_code == 200, response.text
    answer = response.json()
    nul = "item holds a NUL character (U+0000), which cannot be stored"
    assert answer["rejected"] == [{"index": i, "error": nul} for i in (1, 2, 3)]
    stack.wait_audited(1)
    stack.settle(1.5)
    assert [r.message for r in stack.audit_rows()] == ["clean"]
    assert "Traceback" not in stack.processes["worker"].log_path.read_text(errors="replace")


def test_kombus_type_markers_in_an_event_are_the_senders_data(make_stack: StackFactory) -> None:
    """kombu's JSON decoder turns {"__type__": ..., "__value__": ...} into a datetime, bytes...
    and fails on a type it does not know; an event's fields must reach the audit as sent."""
    stack = make_stack()
    with stack.together():
        stack.start_ingest()
        stack.start_worker()
    markers = [
        {"__type__": "bogus", "__value__": 1},
        {"__type__": "datetime", "__value__": "2026-12-06T14:00:00"},
        {"__type__": "bytes", "__value__": "aGk="},
    ]
    body = [posted_event(f"typed {i}", vendor=m, timestamp=NOW) for i, m in enumerate(markers)]
    response = stack.post(orjson.dumps(body), **JSON)
    assert response.status_code == 200 and response.json()["accepted"] == 3, response.text
    stack.wait_audited(3)
    rows = sorted(stack.audit_rows(), key=lambda r: r.message)
    assert [r.raw["vendor"] for r in rows] == markers


def _hostile_bodies() -> list[tuple[bytes, dict[str, str], int]]:
    """What the hostile sender posts in turn: (body, headers, expected status)."""
    cid = str(uuid.uuid4())
    deep = (
        b'{"timestamp":"' + NOW.encode() + b'","hostname":"h","message":"deep","d":' + DEEP + b"}"
    )
    mixed = b"[" + b",".join(
        [
            orjson.dumps(posted_event("hostile but valid", correlation_id=cid, timestamp=NOW)),
            deep,
            orjson.dumps(posted_event("nul\x00", timestamp=NOW)),
            orjson.dumps(posted_event("duplicate", correlation_id=cid, timestamp=NOW)),
        ]
    ) + b"]"  # fmt: skip
    members = gzip.compress(b" ") * 5000
    oversize = b"".join(
        orjson.dumps(posted_event(f"o{i}", timestamp=NOW)) + b"\n" for i in range(4000)
    )
    return [
        (mixed, JSON, 200),
        (deep, JSON, 422),
        (members, {"Content-Encoding": "gzip"}, 413),
        (oversize, {}, 413),
    ]


@pytest.mark.slow
def test_clean_senders_are_unharmed_by_a_hostile_one(make_stack: StackFactory) -> None:
    stack = make_stack(MAX_INGEST_BODY_BYTES=str(CAP))
    with stack.together():
        stack.start_ingest()
        stack.start_worker()
    stop = threading.Event()
    clean_sent: list[str] = []
    clean_errors: list[str] = []
    hostile: Counter[int] = Counter()
    hostile_accepted: list[str] = []
    lock = threading.Lock()

    def clean_sender(n: int) -> None:
        session = requests.Session()
        while not stop.is_set():
            ids = [str(uuid.uuid4()) for _ in range(3)]
            body = [posted_event(f"sender {n}", correlation_id=i, timestamp=NOW) for i in ids]
            try:
                response = session.post(stack.ingest_url, data=orjson.dumps(body), timeout=30)
                answer = response.json()
            except (requests.RequestException, ValueError) as exc:
                with lock:
                    clean_errors.append(repr(exc))
                continue
            with lock:
                if response.status_code != 200 or answer["rejected"]:
                    clean_errors.append(f"{response.status_code} {answer}")
                else:
                    clean_sent.extend(ids)
                    assert answer["correlation_ids"] == ids

    def hostile_sender() -> None:
        session = requests.Session()
        turn = 0
        while not stop.is_set():
            body, headers, expected = _hostile_bodies()[turn % 4]  # a new correlation_id each time
            turn += 1
            # The oversize body goes chunked: it must not be cut and half accepted.
            data = _chunks(body) if len(body) > CAP else body
            try:
                response = session.post(stack.ingest_url, data=data, headers=headers, timeout=30)
            except requests.RequestException:
                with lock:
                    hostile[-1] += 1  # no answer at all (say, a reset instead of the 413)
                continue
            with lock:
                hostile[response.status_code] += 1
                if response.status_code != expected:
                    hostile[-1] += 1  # an unexpected answer
                elif expected == 200:
                    answer = response.json()
                    assert [r["index"] for r in answer["rejected"]] == [1, 2, 3]
                    hostile_accepted.extend(answer["correlation_ids"])

    threads = [threading.Thread(target=clean_sender, args=(n,)) for n in range(20)]
    threads.append(threading.Thread(target=hostile_sender))
    for thread in threads:
        thread.start()
    time.sleep(12)
    stop.set()
    for thread in threads:
        thread.join(60)

    assert clean_errors == [], clean_errors[:5]
    assert hostile[-1] == 0 and hostile[500] == 0, hostile
    assert hostile[200] and hostile[413] and hostile[422], hostile
    assert len(clean_sent) > 200
    # Every accepted event is audited, exactly once; nothing else is.
    stack.wait_audited(len(clean_sent) + len(hostile_accepted), timeout=180)
    stack.settle(2)
    audited = Counter(str(r.correlation_id) for r in stack.audit_rows())
    assert set(audited) == set(clean_sent) | set(hostile_accepted)
    assert set(audited.values()) == {1}
