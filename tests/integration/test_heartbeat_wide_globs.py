"""A heartbeat on ``*`` over a fleet gone quiet, on real PostgreSQL and Redis: it raises at most
HEARTBEAT_MAX_QUIET_HOSTS alerts and counts the rest, and the admin page and the API answer a
bounded page of quiet hosts with links to the others."""

from __future__ import annotations

import logging
import re
import time

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.config import Settings
from mutt_app.db.models import Heartbeat
from mutt_app.metrics import HEARTBEAT_QUIET_OVER_CAP
from mutt_app.runtime import Runtime
from mutt_app.watch import heartbeat_quiet, heartbeats
from tests.web import call, login

HOSTS = 2000
CAP = 120


@pytest.fixture
def quiet_fleet(
    settings: Settings, sessions: sessionmaker[Session], redis_client: redis.Redis
) -> tuple[Runtime, int]:
    """A heartbeat on ``*`` and HOSTS hosts last heard from 10 to 30 min ago (all quiet)."""
    with sessions.begin() as session:
        row = Heartbeat(name="everything", host="*", interval_minutes=5)
        session.add(row)
        session.flush()
        heartbeat_id = row.id
    redis_client.set(heartbeats.SINCE_KEY, int((time.time() - 3600) * 1000))
    now_ms = time.time() * 1000
    seen = {f"host-{n:05d}": now_ms - 600_000 - n * 600 for n in range(HOSTS)}
    redis_client.zadd(heartbeats.LAST_SEEN_KEY, seen)
    return Runtime(settings.model_copy(update={"heartbeat_max_quiet_hosts": CAP})), heartbeat_id


def test_a_heartbeat_on_a_wide_glob_raises_at_most_its_cap_and_counts_the_rest(
    quiet_fleet: tuple[Runtime, int],
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime, heartbeat_id = quiet_fleet
    caplog.set_level(logging.WARNING, logger="mutt_app.watch.heartbeats")
    sent: list[dict] = []
    outcome = heartbeats.check(runtime, sent.extend)
    assert len(outcome.raised) == len(sent) == CAP
    # The longest quiet hosts are the ones alerted.
    assert {a["source"] for a in sent} == {f"host-{n:05d}" for n in range(HOSTS - CAP, HOSTS)}
    assert redis_client.hlen(heartbeat_quiet.QUIET_KEY) == CAP
    assert heartbeat_quiet.over_cap(redis_client) == {heartbeat_id: HOSTS - CAP}
    assert HEARTBEAT_QUIET_OVER_CAP._value.get() == HOSTS - CAP
    assert (
        f"{HOSTS - CAP} more quiet hosts not alerted: it has its cap of {CAP} open" in caplog.text
    )

    # The next run raises nothing more; one host talking frees one place, taken at once.
    sent.clear()
    assert heartbeats.check(runtime, sent.extend).raised == [] and sent == []
    redis_client.zadd(heartbeats.LAST_SEEN_KEY, {f"host-{HOSTS - 1:05d}": time.time() * 1000})
    outcome = heartbeats.check(runtime, sent.extend)
    assert len(outcome.cleared) == 1 and len(outcome.raised) == 1
    assert redis_client.hlen(heartbeat_quiet.QUIET_KEY) == CAP
    assert heartbeat_quiet.over_cap(redis_client) == {heartbeat_id: HOSTS - CAP - 1}

    # Deleting the heartbeat clears at most its cap.
    with runtime.sessions.begin() as session:
        session.delete(session.get(Heartbeat, heartbeat_id))
    sent.clear()
    outcome = heartbeats.check(runtime, sent.extend)
    assert len(outcome.cleared) == CAP and len(sent) == CAP
    assert heartbeat_quiet.over_cap(redis_client) == {}
    assert HEARTBEAT_QUIET_OVER_CAP._value.get() == 0


def test_the_api_answers_a_bounded_page_of_quiet_hosts_with_links(
    quiet_fleet: tuple[Runtime, int], api_client: FlaskClient
) -> None:
    runtime, heartbeat_id = quiet_fleet
    heartbeats.check(runtime, lambda alerts: None)
    listed = call(api_client, "GET", "/api/v2/heartbeats", status=200)
    (hb,) = listed["heartbeats"]
    assert (hb["quiet_count"], hb["quiet_over_cap"], len(hb["quiet_hosts"])) == (
        CAP,
        HOSTS - CAP,
        10,
    )
    assert listed["links"] == {"next": None, "prev": None}
    few = call(api_client, "GET", "/api/v2/heartbeats?quiet_limit=3", status=200)
    assert len(few["heartbeats"][0]["quiet_hosts"]) == 3
    call(api_client, "GET", "/api/v2/heartbeats?quiet_limit=101", status=400)

    path = f"/api/v2/heartbeats/{heartbeat_id}/quiet-hosts?limit=50"
    hosts: list[str] = []
    pages = 0
    while path:
        page = call(api_client, "GET", path, status=200)
        assert len(page["quiet_hosts"]) <= 50 and page["total"] == CAP
        assert page["over_cap"] == HOSTS - CAP
        hosts += [q["host"] for q in page["quiet_hosts"]]
        path, pages = page["links"]["next"], pages + 1
    assert pages == 3 and len(set(hosts)) == CAP
    assert hosts[0] == f"host-{HOSTS - 1:05d}"  # longest quiet first
    assert page["links"]["prev"].endswith("offset=50")
    call(api_client, "GET", f"/api/v2/heartbeats/{heartbeat_id}/quiet-hosts?limit=501", status=400)
    call(api_client, "GET", "/api/v2/heartbeats/999999/quiet-hosts", status=404)


def test_the_admin_page_shows_a_bounded_page_of_quiet_hosts_with_links(
    quiet_fleet: tuple[Runtime, int], admin_client: FlaskClient
) -> None:
    runtime, _ = quiet_fleet
    heartbeats.check(runtime, lambda alerts: None)
    assert login(admin_client, "victor") == 302
    page = admin_client.get("/admin/heartbeats/").get_data(as_text=True)
    table = page[page.index('id="quiet-hosts"') : page.index("</table>")]
    assert table.count("<tr>") - 1 == 50  # the header row, then one page
    assert f"{CAP} in all" in page and "Page 1 of 3" in page
    assert f"{HOSTS - CAP} more quiet hosts were not alerted" in page
    last = re.search(r'href="([^"]+)" id="quiet-hosts-next"', page)
    assert last is not None
    second = admin_client.get(last.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert "Page 2 of 3" in second
    third = admin_client.get("/admin/heartbeats/?quiet_page=3").get_data(as_text=True)
    table = third[third.index('id="quiet-hosts"') : third.index("</table>")]
    assert table.count("<tr>") - 1 == CAP - 100 and 'id="quiet-hosts-next"' not in third
