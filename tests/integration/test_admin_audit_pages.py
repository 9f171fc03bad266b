"""The admin UI's audit pages on both databases: every row's details page, and hostile paging."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr

from mutt_app.commands import users as accounts
from mutt_app.config import Settings
from mutt_app.db.engine import make_engine, session_factory, upgrade
from mutt_app.db.models import EventAuditLog
from mutt_app.web import create_app
from tests.conftest import close_web_app
from tests.web import PASSWORD, login

KEY = "audit-pages-key-0123456789"
HUGE = "9" * 30  # past 64 bits


@pytest.fixture(params=["postgresql", "sqlite"])
def audit_app(request, settings: Settings, tmp_path) -> Iterator[Flask]:  # type: ignore[no-untyped-def]
    update: dict = {"webui_cookie_secure": False, "webui_api_key": SecretStr(KEY)}
    if request.param == "sqlite":
        update["database_url"] = f"sqlite:///{tmp_path / 'mutt.db'}"
    config = settings.model_copy(update=update)
    engine = make_engine(config)
    if request.param == "sqlite":
        upgrade(engine)
    now = datetime(2026, 12, 3, 9, 30, 15, 123456, tzinfo=UTC)
    with session_factory(engine).begin() as session:
        accounts.create_user(session, "victor", PASSWORD, "viewer", changed_by="test")
        session.add(
            EventAuditLog(
                event_timestamp=now,
                received_at=now,
                hostname="router-07",
                message="Interface down",
                handling_decision="Page_and_ticket",
                team_assignment="NETO",
                matched_rule_id=1,
                correlation_id=uuid.uuid4(),
            )
        )
    engine.dispose()
    app = create_app(config)
    app.testing = True
    try:
        yield app
    finally:
        close_web_app(app)


@pytest.fixture
def viewer_client(audit_app: Flask) -> FlaskClient:
    client = audit_app.test_client()
    assert login(client, "victor") == 302
    return client


def _details_links(client: FlaskClient, listing: str) -> list[str]:
    page = client.get(listing)
    assert page.status_code == 200
    links = re.findall(r'href="([^"]*/details/\?id=[^"]+)"', page.get_data(as_text=True))
    return [link.replace("&amp;", "&") for link in links]


def test_every_event_audit_row_has_a_details_page(viewer_client: FlaskClient) -> None:
    [link] = _details_links(viewer_client, "/admin/event-audit/")
    response = viewer_client.get(link)
    assert response.status_code == 200, link
    text = response.get_data(as_text=True)
    assert "router-07" in text and "Interface down" in text


def test_every_config_audit_row_has_a_details_page(viewer_client: FlaskClient) -> None:
    [link] = _details_links(viewer_client, "/admin/config-audit/")  # victor's CREATE
    response = viewer_client.get(link)
    assert response.status_code == 200, link
    assert "victor" in response.get_data(as_text=True)


def test_a_bad_event_audit_id_is_not_an_error(viewer_client: FlaskClient) -> None:
    for bad in ("1", "x", "1,nonsense", f"{HUGE},2026-12-03", "1,2026-12-03,3", ""):
        response = viewer_client.get(f"/admin/event-audit/details/?id={bad}")
        assert response.status_code == 302, (bad, response.status_code)  # back to the list


def test_hostile_ids_in_the_admin_pages_name_nothing(viewer_client: FlaskClient) -> None:
    for path in ("config-audit", "rules", "hosts", "teams"):
        for bad in ("x", "-1", "0", str(2**31), str(2**63), HUGE, "1,2"):
            response = viewer_client.get(f"/admin/{path}/details/?id={bad}")
            assert response.status_code == 302, (path, bad, response.status_code)
    for bad in (str(2**63), HUGE):
        assert viewer_client.get(f"/admin/dlq/{bad}/").status_code == 404
        assert viewer_client.get(f"/admin/dlq/{bad}/?poison=1").status_code == 404


def test_hostile_paging_in_the_admin_lists_is_400(viewer_client: FlaskClient) -> None:
    for path in ("/admin/event-audit/", "/admin/config-audit/", "/admin/rules/", "/admin/hosts/"):
        for page in (HUGE, f"-{HUGE}", "-1", str(2**63)):
            assert viewer_client.get(f"{path}?page={page}").status_code == 400, (path, page)
        assert viewer_client.get(f"{path}?page=0").status_code == 200
        assert viewer_client.get(f"{path}?page=3").status_code == 200  # past the end: an empty page


def test_hostile_filters_and_searches_are_not_500(viewer_client: FlaskClient) -> None:
    # 400 where the database refuses the value; PostgreSQL compares a huge number as numeric (200).
    hostile = {
        "/admin/event-audit/": (f"flt0_matched_rule_id_equals={HUGE}", "search=%00"),
        "/admin/config-audit/": (f"flt0_record_id_equals={HUGE}", "flt0_changed_by_equals=%00"),
        "/admin/rules/": (f"flt0_priority_equals={HUGE}", "search=a%00b"),
    }
    for path, queries in hostile.items():
        for query in queries:
            expected = (400,) if "%00" in query else (200, 400)
            assert viewer_client.get(f"{path}?{query}").status_code in expected, (path, query)
        assert viewer_client.get(f"{path}?sort={HUGE}&desc=x&page_size={HUGE}").status_code == 200


def test_hostile_paging_in_the_dead_letter_page_gives_a_clean_page(
    viewer_client: FlaskClient,
) -> None:
    for page in (HUGE, "-1", str(2**63)):
        for poison in ("", "&poison=1"):
            response = viewer_client.get(f"/admin/dlq/?page={page}{poison}")
            assert response.status_code == 200, (page, poison)


def test_hostile_paging_in_the_api_is_400(audit_app: Flask) -> None:
    client = audit_app.test_client()
    paging = {
        "/api/v2/audit-logs": ("page", "limit"),
        "/api/v2/config-audit": ("page", "limit"),
        "/api/v2/rules": ("limit", "offset"),
        "/api/v2/dlq": ("limit", "offset"),
    }
    for path, args in paging.items():
        for arg in args:
            for value in (HUGE, "-1", str(2**63), "1e3"):
                response = client.get(f"{path}?{arg}={value}", headers={"X-API-Key": KEY})
                assert response.status_code == 400, (path, arg, value)
