"""Ingest under gunicorn with the shipped config (deploy/gunicorn/ingest.conf.py), on real Redis.

An address that sends too many wrong ``X-API-Key`` values is answered 429 with Retry-After (before
its key is even compared), counted in mutt_webui_auth_throttled_total{kind="ingest-key"}, and
logged once; a sender with the good key at another address is served as before, with the throttle
asked about it once a second rather than per request. The shipped config opens no control socket in
the service user's home. Behind the shipped nginx, with INGEST_TRUSTED_PROXIES=1, the throttle still
counts each sender's own address, which a sender cannot forge with an X-Forwarded-For of its own.
Without a key, ingest stops gunicorn at start with one line, unless INGEST_ALLOW_OPEN says the
endpoint is meant to be open; open, its /health and its log say so.
"""

from __future__ import annotations

import http.client
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
import redis
import requests

from tests.e2e.conftest import StackFactory
from tests.e2e.stack import Stack
from tests.factories import posted_event
from tests.nginx_server import nginx_binary

KEY = "e2e-ingest-key-0123456789"
MAX_FAILURES = 5
FLOODERS = 48
GOOD_POSTS = 30


def _post(
    stack: Stack, key: str, source: str, port: int | None = None, **extra: str
) -> tuple[int, dict[str, str], dict]:
    """POST one event from the local address ``source`` (127.0.0.x), with ``key``, to ``port``
    (ingest's own unless given) with ``extra`` headers."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port or stack.ingest_port, timeout=30, source_address=(source, 0)
    )
    try:
        body = orjson.dumps([posted_event(f"from {source}")])
        headers = {"Content-Type": "application/json", "X-API-Key": key, **extra}
        connection.request("POST", "/api/v2/ingest", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), orjson.loads(response.read())
    finally:
        connection.close()


def _sample(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{name}\{{{labels}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_an_address_sending_bad_ingest_keys_is_throttled_and_a_good_sender_elsewhere_is_not(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = make_stack(
        INGEST_API_KEY=KEY,
        WEBUI_AUTH_IP_MAX_FAILURES=str(MAX_FAILURES),
        WEBUI_AUTH_IP_WINDOW_SECONDS="120",
    )
    (tmp_path / "home").mkdir()
    stack.start_shipped_ingest(HOME=str(tmp_path / "home"))
    guesser, relay = "127.0.0.2", "127.0.0.3"

    # Served once with the good key, the guesser's address is remembered as clear for a second
    # (ClearAddresses): its first failure must end that, or good keys would pass while throttled.
    assert _post(stack, KEY, guesser)[0] == 200
    answers_seen = [_post(stack, f"guess-{n}", guesser)[0] for n in range(MAX_FAILURES)]
    assert answers_seen == [401] * MAX_FAILURES
    for n in range(20):
        status, headers, body = _post(stack, f"guess-{MAX_FAILURES + n}", guesser)
        assert status == 429, body
        assert 1 <= int(headers["Retry-After"]) <= 120
    # Throttled before the key is compared: even the good key waits at that address.
    assert _post(stack, KEY, guesser)[0] == 429

    # Another address with the good key is served; so is a wrong key there (its own count).
    status, _, body = _post(stack, KEY, relay)
    assert status == 200 and body["accepted"] == 1, body
    assert _post(stack, "relay-typo", relay)[0] == 401

    page = requests.get(f"http://127.0.0.1:{stack.ingest_port}/metrics", timeout=10).text
    health = requests.get(f"http://127.0.0.1:{stack.ingest_port}/health", timeout=10).json()
    assert health["auth"] == "api-key", health
    throttled = _sample(page, "mutt_webui_auth_throttled_total", 'kind="ingest-key"')
    failures = _sample(page, "mutt_webui_auth_failures_total", 'kind="ingest-key"')
    assert throttled == 21 and failures == MAX_FAILURES + 1, page
    refused = _sample(page, "mutt_ingest_requests_total", 'reason="auth_throttled",status="fail"')
    assert refused == 21
    log = stack.processes["ingest"].log_path.read_text(errors="replace")
    assert log.count(f"ingest: {guesser} throttled: {MAX_FAILURES} bad X-API-Key values") == 1

    # The shipped config opens no control socket (gunicorn >= 25.1 would in ~/.gunicorn).
    assert not (tmp_path / "home" / ".gunicorn").exists()


def test_a_relay_with_the_good_key_is_checked_against_the_throttle_once_a_second_not_per_request(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = make_stack(INGEST_API_KEY=KEY)
    (tmp_path / "home").mkdir()
    stack.start_shipped_ingest(HOME=str(tmp_path / "home"))
    client = redis.Redis.from_url(stack.env["REDIS_URL"])

    def throttle_checks() -> int:  # the ingest path runs no other Lua script than the throttle's
        return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))

    before, started = throttle_checks(), time.monotonic()
    for _ in range(40):
        assert _post(stack, KEY, "127.0.0.3")[0] == 200
    elapsed, checks = time.monotonic() - started, throttle_checks() - before
    print(f"\n40 good requests in {elapsed:.1f} s: {checks} throttle checks")
    assert 1 <= checks <= math.ceil(elapsed) + 1


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed")
def test_behind_nginx_the_throttle_counts_each_senders_address_not_nginxs(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(
        INGEST_API_KEY=KEY,
        WEBUI_AUTH_IP_MAX_FAILURES=str(MAX_FAILURES),
        WEBUI_AUTH_IP_WINDOW_SECONDS="120",
        INGEST_TRUSTED_PROXIES="1",
    )
    with stack.together():
        stack.start_shipped_ingest()
        stack.start_proxy()
    guesser, relay, port = "127.0.0.2", "127.0.0.3", stack.proxy_ports["ingest"]

    for n in range(MAX_FAILURES):
        assert _post(stack, f"guess-{n}", guesser, port)[0] == 401
    assert _post(stack, "guess-more", guesser, port)[0] == 429
    # Naming another address does not help: nginx appends the one it saw, which the app takes.
    assert _post(stack, KEY, guesser, port, **{"X-Forwarded-For": relay})[0] == 429
    # Every request reaches gunicorn from nginx's address, yet the relay is served.
    status, _, body = _post(stack, KEY, relay, port)
    assert status == 200 and body["accepted"] == 1, body
    log = stack.processes["ingest"].log_path.read_text(errors="replace")
    assert f"ingest: {guesser} throttled" in log, log[-2000:]


def test_without_a_key_ingest_stops_gunicorn_at_start_with_one_line(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(INGEST_ALLOW_OPEN="false")
    with pytest.raises(RuntimeError, match="did not start"):
        stack.start_shipped_ingest(workers=1)
    ingest = stack.processes["ingest"]
    # Exit status 4: gunicorn's master stops instead of booting the worker again, forever.
    assert ingest.popen is not None and ingest.popen.wait(30) == 4
    lines = [line for line in ingest.tail(None).splitlines() if line.startswith("mutt: ")]
    assert lines == [
        "mutt: INGEST_API_KEY is not set: the ingest endpoint would accept posts from anyone;"
        " set it, or set INGEST_ALLOW_OPEN=true if the endpoint is meant to be open"
    ]


def test_an_ingest_meant_to_be_open_starts_and_says_so(make_stack: StackFactory) -> None:
    stack = make_stack(INGEST_ALLOW_OPEN="true")
    stack.start_shipped_ingest(workers=1)
    health = requests.get(f"http://127.0.0.1:{stack.ingest_port}/health", timeout=10).json()
    assert health["auth"] == "open" and health["status"] == "healthy", health
    status, _, body = _post(stack, "any-key-at-all", "127.0.0.2")
    assert status == 200 and body["accepted"] == 1, body
    log = stack.processes["ingest"].log_path.read_text(errors="replace")
    assert "INGEST_API_KEY is not set and INGEST_ALLOW_OPEN is true" in log, log[-2000:]


def test_a_flood_of_bad_keys_leaves_the_good_senders_rounds_their_redis_connections(
    make_stack: StackFactory,
) -> None:
    """Under gevent every request runs at once, and a bad key's throttle check takes a connection
    from the process's Redis pool (REDIS_MAX_CONNECTIONS, here 4). The publishing rounds have a pool
    of their own: however many checks hold theirs, the good sender's events are published. And a
    check that finds the pool in use waits its turn: every bad key is counted, none logs a failure."""
    stack = make_stack(
        INGEST_API_KEY=KEY,
        REDIS_MAX_CONNECTIONS="4",
        # Every bad key is counted and none throttled: each checks with Redis the whole run.
        WEBUI_AUTH_IP_MAX_FAILURES="1000000",
    )
    with stack.together():
        stack.start_worker()
        stack.start_shipped_ingest(workers=1)
    stop = threading.Event()

    def flood(index: int) -> int:
        sent = 0
        while not stop.is_set():
            assert _post(stack, "wrong-key", f"127.0.2.{index + 1}")[0] == 401
            sent += 1
        return sent

    with ThreadPoolExecutor(FLOODERS) as pool:
        flooding = [pool.submit(flood, i) for i in range(FLOODERS)]
        time.sleep(1)
        try:
            answers = [_post(stack, KEY, "127.0.0.3") for _ in range(GOOD_POSTS)]
        finally:
            stop.set()
        bad_keys = sum(f.result() for f in flooding)
    statuses = [status for status, _, _ in answers]
    assert statuses == [200] * GOOD_POSTS, [body for _, _, body in answers if "error" in body][:3]
    assert bad_keys > GOOD_POSTS, bad_keys  # the flood ran alongside
    stack.wait_audited(GOOD_POSTS)
    # Each check waited for a connection of the full pool, rather than failing open with a line.
    log = stack.processes["ingest"].log_path.read_text(errors="replace")
    assert "throttle unavailable" not in log, log[-2000:]
