"""The admin heartbeats page through Flask's test client, on a real PostgreSQL and Redis: changes
audited with a reason, the form's host-or-team check, and the quiet hosts listed first."""

from __future__ import annotations

import re
import time

import redis
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.config import Settings
from mutt_app.db.models import ConfigAuditLog, Heartbeat
from mutt_app.runtime import Runtime
from mutt_app.watch import heartbeats
from tests.web import form_token, login

FORM = {"interval_minutes": "5", "handling": "Ticket_only", "is_active": "y", "team": ""}


def _audit(sessions: sessionmaker[Session]) -> list[ConfigAuditLog]:
    with sessions() as session:
        query = select(ConfigAuditLog).where(ConfigAuditLog.table_name == "heartbeats")
        return list(session.scalars(query.order_by(ConfigAuditLog.id)))


def test_admin_creates_edits_and_deletes_heartbeats_with_a_reason(
    admin_client: FlaskClient,
    sessions: sessionmaker[Session],
) -> None:
    assert login(admin_client, "alice") == 302
    token = form_token(admin_client, "/admin/heartbeats/new/")
    data = {**FORM, "name": "db", "host": " db-* ", "reason": "watch dbs", "csrf_token": token}
    assert admin_client.post("/admin/heartbeats/new/", data=data).status_code == 302
    # Neither host nor team, and both: refused with the reason why, nothing written.
    for host, team in (("", ""), ("h", "NETO")):
        bad = {**data, "name": "bad", "host": host, "team": team}
        page = admin_client.post("/admin/heartbeats/new/", data=bad, follow_redirects=True)
        assert "give exactly one" in page.get_data(as_text=True)
    no_reason = {**data, "name": "other", "reason": ""}
    assert admin_client.post("/admin/heartbeats/new/", data=no_reason).status_code == 200
    with sessions() as session:
        (row,) = session.scalars(select(Heartbeat)).all()
        assert (row.name, row.host, row.team) == ("db", "db-*", None)
        row_id = row.id

    edit = {**data, "interval_minutes": "15", "reason": "slower"}
    url = f"/admin/heartbeats/edit/?id={row_id}"
    assert admin_client.post(url, data=edit).status_code == 302
    gone = {"id": str(row_id), "reason": "retired", "csrf_token": token}
    assert admin_client.post("/admin/heartbeats/delete/", data=gone).status_code == 302
    audit = _audit(sessions)
    assert [(a.operation, a.changed_by, a.reason) for a in audit] == [
        ("CREATE", "alice", "watch dbs"),
        ("UPDATE", "alice", "slower"),
        ("DELETE", "alice", "retired"),
    ]
    assert (audit[1].old_values["interval_minutes"], audit[1].new_values["interval_minutes"]) == (
        5,
        15,
    )


def test_the_page_lists_quiet_hosts_first_and_viewers_cannot_change(
    admin_client: FlaskClient,
    sessions: sessionmaker[Session],
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    with sessions.begin() as session:
        for name in ("alpha", "bravo", "charlie"):
            session.add(Heartbeat(name=name, host=f"{name}-*", interval_minutes=5))
    redis_client.set(heartbeats.SINCE_KEY, int((time.time() - 3600) * 1000))
    redis_client.zadd(heartbeats.LAST_SEEN_KEY, {"charlie-9": (time.time() - 600) * 1000})
    heartbeats.check(Runtime(settings), lambda alerts: None)

    assert login(admin_client, "victor") == 302
    page = admin_client.get("/admin/heartbeats/").get_data(as_text=True)
    quiet_table = page[page.index('id="quiet-hosts"') : page.index("</table>")]
    assert "charlie-9" in quiet_table
    names = re.findall(r"<td class=\"col-name\">\s*(\w+)", page)
    assert names == ["charlie", "alpha", "bravo"], names
    assert admin_client.get("/admin/heartbeats/new/").status_code == 403

    redis_client.delete(heartbeats.QUIET_KEY)
    assert 'id="quiet-hosts-none"' in admin_client.get("/admin/heartbeats/").get_data(as_text=True)
