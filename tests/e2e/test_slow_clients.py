"""Slow clients: 50 connections trickling their requests one byte at a time do not stop ingest.

Real processes as the deploy kit runs them: gunicorn with the shipped config
(deploy/gunicorn/ingest.conf.py, here 2 gevent workers) behind a real nginx with the shipped site
(deploy/nginx/mutt-ingest.conf, only its ports and log directory changed), a Celery worker and
PostgreSQL. Half the slow clients trickle their header, half send a whole header and trickle the
body. While they do, a good client's posts through nginx are all answered and audited, and nginx
cuts the header tricklers off (408 in its access log, where the runbook sends the operator).

Straight at gunicorn each trickler holds one of a worker's GUNICORN_INGEST_CONNECTIONS (a greenlet
waiting for a whole request): with the shipped 1,000 per worker, 50 leave room and good posts are
answered; with as few connections as tricklers (as the gthread worker's 2 x 16 threads were),
nobody else is.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
import requests

from tests.e2e.conftest import StackFactory
from tests.factories import posted_event
from tests.nginx_server import nginx_binary
from tests.services import wait_for

SLOW_CLIENTS = 50
GOOD_POSTS = 40
GOOD_ATTEMPTS = 4  # straight at gunicorn
# A starved request waits for a trickler to finish, far longer than this.
GOOD_TIMEOUT = 10.0
TRICKLE_INTERVAL = 0.5  # seconds between one slow client's bytes
JSON = {"Content-Type": "application/json"}

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed")


class Tricklers:
    """``count`` connections to ``port``, each sending one POST one byte every TRICKLE_INTERVAL: the
    even ones from the first byte of the header, the odd ones (after a whole header) of the body.
    Each comes from its own loopback address (127.0.1.N), as separate clients would. A connection
    the server closes is counted in ``cut_off`` and opened again, so ``count`` stay open."""

    def __init__(self, port: int, count: int = SLOW_CLIENTS) -> None:
        self.port, self.count = port, count
        self.cut_off = 0
        self.opened = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Tricklers:
        self._thread.start()
        assert self.opened.wait(30), "the slow clients did not connect"
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _open(self, index: int) -> tuple[socket.socket, bytes]:
        body = orjson.dumps([posted_event(f"trickled {index}")])
        head = (
            "POST /api/v2/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        source = (f"127.0.1.{index + 1}", 0)
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5, source_address=source)
        if index % 2:
            sock.sendall(head)
            return sock, body
        return sock, head + body

    def _run(self) -> None:
        connections = [self._open(i) for i in range(self.count)]
        try:
            while not self._stop.is_set():
                for index, (sock, pending) in enumerate(connections):
                    if not pending:
                        continue
                    try:
                        sock.send(pending[:1])
                        connections[index] = (sock, pending[1:])
                    except OSError:
                        self.cut_off += 1
                        sock.close()
                        connections[index] = self._open(index)
                self.opened.set()
                self._stop.wait(TRICKLE_INTERVAL)
        finally:
            for sock, _ in connections:
                sock.close()


def _good_post(url: str, session: requests.Session | None = None) -> tuple[int | None, float]:
    """One event posted to ``url``: (status, or None when not answered in time; seconds)."""
    body = orjson.dumps([posted_event(f"good {uuid.uuid4()}")])
    started = time.monotonic()
    try:
        response = (session or requests).post(url, data=body, headers=JSON, timeout=GOOD_TIMEOUT)
        return response.status_code, time.monotonic() - started
    except requests.RequestException:
        return None, time.monotonic() - started


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def test_a_good_client_is_served_through_nginx_while_fifty_clients_trickle(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(INGEST_TRUSTED_PROXIES="1")
    with stack.together():
        stack.start_worker()
        stack.start_shipped_ingest(workers=2)
        stack.start_proxy()

    with Tricklers(stack.proxy_ports["ingest"]) as slow, requests.Session() as good:
        results = []
        for _ in range(GOOD_POSTS):
            results.append(_good_post(stack.proxy_url, good))
            time.sleep(0.2)
        # nginx gives a whole header client_header_timeout at most: every header trickler is cut
        # off and logged as 408 (the body tricklers pause less than client_body_timeout: held).
        headers_trickled = SLOW_CLIENTS // 2
        wait_for(lambda: slow.cut_off >= headers_trickled, 30, "nginx to cut the headers off")
        cut_off = slow.cut_off
    latencies = [seconds for _, seconds in results]
    print(
        f"\nthrough nginx, {SLOW_CLIENTS} slow clients trickling: {GOOD_POSTS} good posts, "
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p99 {_percentile(latencies, 0.99) * 1000:.0f} ms; "
        f"slow connections nginx cut off (and reopened): {cut_off}"
    )
    assert [status for status, _ in results] == [200] * GOOD_POSTS, results
    stack.wait_audited(GOOD_POSTS)
    assert stack.audited() == GOOD_POSTS  # no trickled request reached ingest whole
    # What the operator sees (docs/runbook.md, "Slow clients"): 408s that never reached gunicorn.
    cut = [line for line in stack.proxy_logs["ingest"].read_text().splitlines() if " 408 " in line]
    assert len(cut) >= headers_trickled, cut
    assert all("upstream=- " in line and "server=mutt-ingest" in line for line in cut), cut


@pytest.mark.parametrize(
    ("connections", "answered_expected"),
    [(None, GOOD_ATTEMPTS), (SLOW_CLIENTS // 2, 0)],
    ids=["shipped-connections", "as-few-as-the-tricklers"],
)
def test_without_nginx_each_slow_client_holds_one_of_gunicorns_connections(
    make_stack: StackFactory, connections: int | None, answered_expected: int
) -> None:
    stack = make_stack()
    stack.start_shipped_ingest(workers=2, connections=connections)
    with Tricklers(stack.ingest_port), ThreadPoolExecutor(GOOD_ATTEMPTS) as pool:
        time.sleep(2 * TRICKLE_INTERVAL)  # every slow client has sent a byte
        results = list(pool.map(lambda _: _good_post(stack.ingest_url), range(GOOD_ATTEMPTS)))
    answered = [seconds for status, seconds in results if status == 200]
    print(
        f"\nstraight at gunicorn, 2 x {connections or 'the shipped'} connections, {SLOW_CLIENTS} "
        f"slow clients trickling: {len(answered)} of {GOOD_ATTEMPTS} good posts answered within "
        f"{GOOD_TIMEOUT:.0f} s" + (f" (slowest {max(answered) * 1000:.0f} ms)" if answered else "")
    )
    assert len(answered) == answered_expected, results
