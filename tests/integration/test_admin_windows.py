"""The maintenance windows admin page: who may change what, and validation shown, not saved."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.db.models import ConfigAuditLog, MaintenanceWindow
from tests.web import form_token, login

PAGE = "/admin/maintenance-windows/"
FORM = {
    "name": "core upgrade",
    "timezone": "America/Chicago",
    "starts_at": "2026-03-08T01:30",
    "duration_minutes": "120",
    "rrule": "FREQ=WEEKLY;BYDAY=SU",
    "hosts": "core-sw-*, edge-01",
    "action": "suppress",
    "summary_alert": "on",
    "reason": "CHG-1",
}


def test_a_viewer_sees_the_page_but_cannot_add_a_window(
    admin_client: FlaskClient,
    sessions: sessionmaker[Session],
) -> None:
    assert login(admin_client, "victor") == 302
    token = form_token(admin_client, PAGE)
    assert "New window" not in admin_client.get(PAGE).get_data(as_text=True)
    response = admin_client.post(f"{PAGE}new", data={**FORM, "csrf_token": token})
    assert response.status_code == 403
    with sessions() as session:
        assert session.scalars(select(MaintenanceWindow)).all() == []


def test_an_admin_gets_the_validation_message_and_nothing_is_saved(
    admin_client: FlaskClient,
    sessions: sessionmaker[Session],
) -> None:
    assert login(admin_client, "alice") == 302
    token = form_token(admin_client, PAGE)
    bad = admin_client.post(f"{PAGE}new", data={**FORM, "rrule": "FREQ=NEVER", "csrf_token": token})
    assert bad.status_code == 422
    assert "rrule: not a valid RFC 5545 RRULE" in bad.get_data(as_text=True)
    empty = admin_client.post(f"{PAGE}new", data={**FORM, "hosts": "", "csrf_token": token})
    assert empty.status_code == 422 and "scope: a window needs at least one" in empty.get_data(
        as_text=True
    )
    ok = admin_client.post(f"{PAGE}new", data={**FORM, "csrf_token": token})
    assert ok.status_code == 302
    with sessions() as session:
        (window,) = session.scalars(select(MaintenanceWindow)).all()
        assert window.hosts == ["core-sw-*", "edge-01"] and window.timezone == "America/Chicago"
        audit = session.scalars(
            select(ConfigAuditLog).where(ConfigAuditLog.table_name == "maintenance_windows")
        ).all()
    assert [(a.operation, a.changed_by, a.reason) for a in audit] == [("CREATE", "alice", "CHG-1")]
