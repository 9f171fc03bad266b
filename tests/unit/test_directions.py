"""What ``mutt run`` prints once its stack listens (mutt_app/devtools/directions.py), how many
accounts it finds to say so, the supervisor printing it under its table, and ingest over TLS in
``mutt run``'s plan."""

from __future__ import annotations

import io
import sys
import threading
from pathlib import Path

from mutt_app.cli import Context
from mutt_app.commands.users import create_user
from mutt_app.config import Settings, load_settings
from mutt_app.devtools import launcher
from mutt_app.devtools.database import prepare_database
from mutt_app.devtools.directions import directions
from mutt_app.devtools.parts import plan_parts
from mutt_app.devtools.supervisor import Part, Supervisor
from tests.services import wait_for

REDIS_URL = "redis://127.0.0.1:6391/0"
SINK_URL = "http://127.0.0.1:8099/webhook"


def _settings(tmp_path: Path, **env: str) -> Settings:
    return load_settings({"MUTT_DATA_DIR": str(tmp_path), **env})


def _plan(settings: Settings, only: tuple[str, ...] | None = None) -> list[Part]:
    return plan_parts(settings, only, None, REDIS_URL, SINK_URL, python="py")


def test_a_first_run_says_where_everything_is_and_how_to_make_the_first_admin(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, SERVER_PORT_INGESTOR="18080", SERVER_PORT_WEBUI="18090")
    text = "\n".join(directions(settings, _plan(settings), accounts=0))
    assert "POST http://127.0.0.1:18080/api/v2/ingest" in text
    assert "Web UI:         http://127.0.0.1:18090/" in text
    assert "mutt users create admin --role admin --reason 'first admin'" in text
    assert (
        "Metrics:        ingest http://127.0.0.1:18080/metrics, web http://127.0.0.1:18090/metrics"
        ", workers http://127.0.0.1:8081/metrics"
    ) in text
    assert "Flower:         http://127.0.0.1:5555/" in text
    assert "Moog stand-in:  http://127.0.0.1:8099/events" in text


def test_with_accounts_it_does_not_ask_for_a_first_admin(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    text = "\n".join(directions(settings, _plan(settings), accounts=2))
    assert "no account yet" not in text
    assert "2 account(s): `mutt users list`" in text
    unknown = "\n".join(directions(settings, _plan(settings), accounts=None))
    assert "account" not in unknown


def test_directions_name_only_the_parts_that_run(tmp_path: Path) -> None:
    settings = _settings(tmp_path, MOOG_WEBHOOK_URL="https://moog.example.net/hook")
    lines = directions(settings, _plan(settings, ("ingest",)), accounts=0)
    assert lines == [
        "Send events:    POST http://127.0.0.1:8080/api/v2/ingest  (or `mutt send` for sample events)",
        "Metrics:        ingest http://127.0.0.1:8080/metrics",
    ]


def test_mutt_run_serves_ingest_over_tls_with_the_ingest_tls_settings(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        INGEST_TLS_CERT_PATH="/c/server.crt",
        INGEST_TLS_KEY_PATH="/c/server.key",
        INGEST_TLS_CLIENT_CA_PATH="/c/ca.pem",
    )
    parts = {part.name: part for part in _plan(settings)}
    argv = list(parts["ingest"].argv)
    assert argv[argv.index("--certfile") + 1] == "/c/server.crt"
    assert argv[argv.index("--keyfile") + 1] == "/c/server.key"
    assert argv[argv.index("--ca-certs") + 1] == "/c/ca.pem"
    assert argv[argv.index("--cert-reqs") + 1] == "2"  # ssl.CERT_REQUIRED
    assert "--certfile" not in parts["web"].argv
    text = "\n".join(directions(settings, list(parts.values()), accounts=1))
    assert "POST https://127.0.0.1:8080/api/v2/ingest\n" in text  # no `mutt send` hint: plain HTTP
    assert "ingest https://127.0.0.1:8080/metrics" in text
    plain = {part.name: part for part in _plan(_settings(tmp_path))}
    assert "--certfile" not in plain["ingest"].argv


def test_the_launcher_counts_the_accounts_of_the_embedded_database(tmp_path: Path) -> None:
    obj = Context(_settings(tmp_path))
    try:
        prepare_database(obj.engine, obj.settings)
        assert launcher._accounts(obj) == 0
        with obj.sessions.begin() as session:
            create_user(session, "first", "a long enough password 1", "admin", changed_by="test")
        assert launcher._accounts(obj) == 1
    finally:
        obj.close()


def test_the_supervisor_prints_the_directions_under_its_table() -> None:
    script = "import time; time.sleep(30)"
    parts = [Part("steady", [sys.executable, "-c", script], {"PYTHONUNBUFFERED": "1"})]
    out = io.StringIO()
    supervisor = Supervisor(parts, out=out, stop_timeout=2, notes=["Web UI: here", "  and so"])

    def stop_once_printed() -> None:
        try:
            wait_for(lambda: "and so" in out.getvalue(), 15, "the directions")
        finally:
            supervisor.stop()

    # The supervisor installs signal handlers: it runs in the main thread, the stopper beside it.
    stopper = threading.Thread(target=stop_once_printed)
    stopper.start()
    assert supervisor.run() == 0
    stopper.join(15)
    lines = out.getvalue().splitlines()
    table = lines.index("[mutt] MUTT is running (Ctrl-C stops everything):")
    assert lines[table + 2 : table + 4] == ["[mutt] Web UI: here", "[mutt]   and so"]
