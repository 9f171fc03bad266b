"""The deployment kit under deploy/: checked with the real tools where this machine has them.

Each check that needs a daemon or tool (rsyslogd, syslog-ng, snmptrapd, systemd-analyze, promtool,
shellcheck) skips, naming the binary, when it is absent, so CI without them still passes. rsyslog and
syslog-ng conflict as Debian packages; MUTT_TEST_RSYSLOGD (and MUTT_TEST_RSYSLOG_MODDIR) point the
rsyslog checks at an unpacked rsyslog instead (``apt-get download rsyslog; dpkg -x``), as
``.ci/bootstrap`` does into ``.ci/cache/rsyslog``, which is also looked at.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from mutt_app import metrics
from mutt_app.config import Settings
from mutt_app.events.body import parse_body
from mutt_app.events.schema import VARBIND_SEPARATOR, Event, validate_items
from mutt_app.worker.health import LIVE_PATH, READY_PATH
from tests.deploy_files import DEPLOY, ROOT, alert_rules, dashboard_exprs, metric_names, yaml_module
from tests.nginx_server import shipped_site

UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
OMHTTP_ONLY_PARAMS = re.compile(
    r"^\s*(server|serverport|usehttps|restpath|checkpath|httpheaderkey|httpheadervalue"
    r"|batch(\.\w+)?|retry(\.\w+)?|errorfile)\s*=.*$",
    re.IGNORECASE | re.MULTILINE,
)
TRAP_OID = "1.3.6.1.6.3.1.1.5.3"  # linkDown
TRAP_TEXT = (
    f"router-1 [UDP: [10.0.0.1]:161->[10.0.0.2]:162]: trap{VARBIND_SEPARATOR}"
    f".1.3.6.1.2.1.1.3.0 = Timeticks: (123) 0:00:01.23{VARBIND_SEPARATOR}"
    f".1.3.6.1.6.3.1.1.4.1.0 = OID: .{TRAP_OID}"
)


def _need(binary: str, *candidates: str) -> str:
    found = shutil.which(binary) or next((c for c in candidates if os.access(c, os.X_OK)), None)
    if found is None:
        pytest.skip(f"{binary} is not installed")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout}s")


def _send_syslog_tcp(port: int, lines: list[str]) -> None:
    """RFC 3164 lines, newline-framed, as a network device's relay would send them."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall("".join(f"{line}\n" for line in lines).encode())


def _syslog_lines() -> list[str]:
    # <164> = local4.warning, <27> = daemon.err
    return [
        f"<164>Nov 22 10:00:00 router-1 snmptrapd[42]: {TRAP_TEXT}",
        '<27>Nov 22 10:00:01 router-1 sshd[7]: Interface "Gi0/1" changed state to down',
    ]


def _events_of(body: bytes) -> list[Event]:
    """What MUTT's ingest endpoint makes of a body: all of it must be valid events."""
    items = parse_body(body, content_encoding=None, content_type=None, max_bytes=10 * 2**20)
    events, rejections = validate_items(
        items, required_fields=("timestamp", "message", "hostname"), received_at=datetime.now(UTC)
    )
    assert rejections == [], rejections
    return events


def _check_relayed(events: list[Event]) -> None:
    by_message = {e.message.split(":")[0]: e for e in events}
    trap = next(e for e in events if "trap" in e.message)
    down = next(e for e in events if "changed state" in e.message)
    assert trap.trap_oid == TRAP_OID, by_message
    assert trap.source == "snmptrap"
    assert trap.syslog_severity == 4
    assert down.source == "syslog"
    assert down.syslog_severity == 3
    assert down.message == 'Interface "Gi0/1" changed state to down'
    assert down.raw["program"] == "sshd"


# --- (a) metric names -------------------------------------------------------------------------------


def _exposed_names() -> set[str]:
    """Every sample name mutt_app.metrics can expose, with prometheus_client's suffixes."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "gauge": ("",),
    }
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.name.startswith("mutt_"):
            names.update(family.name + s for s in suffixes[family.type])
    # Make sure the registry really holds the module's metrics (and not, say, nothing at all).
    assert f"{metrics.MOOG_REQUESTS._name}_total" in names
    return names


NON_MUTT_METRICS = {"up"}  # Prometheus's own, per target


def test_alert_rules_read_only_metrics_that_exist() -> None:
    rules = alert_rules()
    exposed = _exposed_names()
    recorded = {rule["record"] for rule in rules if "record" in rule}
    unknown: dict[str, set[str]] = {}
    for rule in rules:
        names = metric_names(rule["expr"])
        assert names, f"no metric in {rule.get('alert') or rule.get('record')}"
        missing = names - exposed - recorded - NON_MUTT_METRICS
        if missing:
            unknown[rule.get("alert") or rule["record"]] = missing
    assert unknown == {}
    alerts = {rule["alert"] for rule in rules if "alert" in rule}
    # The ones the runbook refers to, and the brief asked for.
    for expected in (
        "MuttClassifyQueueBacklog",
        "MuttDLQGrowing",
        "MuttMoogCircuitOpen",
        "MuttMoogForwardFailureRate",
        "MuttIngestSLOBurnFast",
        "MuttForwardSLOBurnFast",
        # The limits an operator must see hit (docs/runbook.md "Limits").
        "MuttIngestKeyThrottled",
        "MuttEventTimeAdjusted",
        "MuttIngestItemsRefusedInexact",
        "MuttMoogRedirecting",
        "MuttMoogUnreadableAnswers",
        "MuttLastSeenOverCap",
        "MuttUnhandledHostsOverCap",
        "MuttHeartbeatQuietOverCap",
        "MuttScheduleWalkStopped",
    ):
        assert expected in alerts
    for rule in rules:
        if "alert" in rule:
            assert rule["annotations"]["runbook"].startswith("docs/runbook.md#")


def test_runbook_anchors_in_alerts_exist() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    # GitHub's anchors: lower case, spaces to dashes, punctuation dropped.
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", runbook, re.MULTILINE)
    }
    for rule in alert_rules():
        if "alert" in rule:
            anchor = rule["annotations"]["runbook"].split("#", 1)[1]
            assert anchor in anchors, f"{rule['alert']}: no heading for #{anchor}"


def test_dashboard_reads_only_metrics_that_exist() -> None:
    exposed = _exposed_names()
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    unknown = {e: metric_names(e) - exposed for e in exprs if metric_names(e) - exposed}
    assert unknown == {}
    # Every metric the app exposes is on the dashboard somewhere (a new metric wants a panel).
    used = set().union(*(metric_names(e) for e in exprs))
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    all_families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in exposed}
    assert all_families - families == set()


def test_metric_name_scanner() -> None:
    # The scanner is what the two tests above rely on: it must find names and skip the rest.
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(mutt_x_bucket{queue="mutt.y", a=~"b|c"}[5m])))'
        " / on (job) group_left up > 14.4 * (1 - 0.995) and mutt:rule:rate5m offset 5m"
    )
    assert metric_names(expr) == {"mutt_x_bucket", "up", "mutt:rule:rate5m"}


def test_prometheus_files_pass_promtool() -> None:
    promtool = _need("promtool")
    # alerts_test.yml: the limits' alerts fire when their limit is hit, and only then.
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        result = subprocess.run(
            [promtool, *args], cwd=DEPLOY / "prometheus", capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_every_metrics_port() -> None:
    config = yaml_module().safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    defaults = Settings()
    for name, port in (
        ("mutt-ingest", defaults.server_port_ingestor),
        ("mutt-web", defaults.server_port_webui),
        ("mutt-worker", defaults.metrics_port_worker),
    ):
        targets = [t for sc in jobs[name]["static_configs"] for t in sc["targets"]]
        assert targets and all(t.endswith(f":{port}") for t in targets)
        assert jobs[name].get("metrics_path", "/metrics") == "/metrics"


# --- (b) rsyslog ------------------------------------------------------------------------------------


def _rsyslogd() -> tuple[str, list[str], Path | None]:
    """rsyslogd, the arguments giving its module directory, and that directory (if known)."""
    unpacked = ROOT / ".ci" / "cache" / "rsyslog"  # where .ci/bootstrap unpacks it
    binary = os.environ.get("MUTT_TEST_RSYSLOGD") or _need(
        "rsyslogd", "/usr/sbin/rsyslogd", str(unpacked / "usr/sbin/rsyslogd")
    )
    moddir = os.environ.get("MUTT_TEST_RSYSLOG_MODDIR")
    if not moddir and binary.startswith(str(unpacked)):
        moddir = str(unpacked / "usr/lib/x86_64-linux-gnu/rsyslog")
    if moddir:
        return binary, ["-M", moddir], Path(moddir)
    for candidate in (
        "/usr/lib/x86_64-linux-gnu/rsyslog",
        "/usr/lib64/rsyslog",
        "/usr/lib/rsyslog",
    ):
        if Path(candidate).is_dir():
            return binary, [], Path(candidate)
    return binary, [], None


def _rsyslog_check(main_conf: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    binary, moddir_args, _ = _rsyslogd()
    return subprocess.run(
        [binary, "-N1", "-f", str(main_conf), *moddir_args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )


def _rsyslog_main(tmp_path: Path, include: Path, extra: str = "") -> Path:
    (tmp_path / "spool").mkdir(exist_ok=True)
    main = tmp_path / "rsyslog.conf"
    main.write_text(
        f'global(workDirectory="{tmp_path / "spool"}")\n{extra}include(file="{include}")\n'
    )
    return main


def _rsyslog_stub(tmp_path: Path, out_file: Path) -> Path:
    """deploy/rsyslog/mutt.conf with its omhttp actions turned into omfile ones.

    Everything else (templates, rulesets, queue and retry settings of the action) is kept, so rsyslog
    still checks it, and the file action shows what omhttp would have sent.
    """
    text = (DEPLOY / "rsyslog" / "mutt.conf").read_text()
    text = text.replace('module(load="omhttp")', "")
    text = OMHTTP_ONLY_PARAMS.sub("", text)
    text = text.replace('type="omhttp"', f'type="omfile" file="{out_file}"')
    stub = tmp_path / "mutt-stub.conf"
    stub.write_text(text)
    return stub


def test_rsyslog_config_validates_with_omhttp(tmp_path: Path) -> None:
    _, _, moddir = _rsyslogd()
    if moddir is None or not (moddir / "omhttp.so").exists():
        pytest.skip(
            "rsyslog's omhttp module (omhttp.so) is not installed "
            "(Debian does not build it; see test_rsyslog_config_without_omhttp_validates)"
        )
    main = _rsyslog_main(tmp_path, DEPLOY / "rsyslog" / "mutt.conf")
    result = _rsyslog_check(main, tmp_path)
    assert result.returncode == 0, result.stderr


def test_rsyslog_config_without_omhttp_validates(tmp_path: Path) -> None:
    main = _rsyslog_main(tmp_path, _rsyslog_stub(tmp_path, tmp_path / "out.json"))
    result = _rsyslog_check(main, tmp_path)
    assert result.returncode == 0, result.stderr


def test_rsyslog_omhttp_settings() -> None:
    # What the omhttp half of the file must say, since rsyslog may not be able to check it here.
    text = (DEPLOY / "rsyslog" / "mutt.conf").read_text()
    for setting in (
        'module(load="omhttp")',
        'restpath="api/v2/ingest"',
        'batch="on"',
        'batch.format="newline"',
        'retry="on"',
        'retry.ruleset="mutt_retry"',
        'httpheaderkey="X-API-Key"',
        'queue.filename="mutt_forward"',
        'queue.saveOnShutdown="on"',
        'action.resumeRetryCount="-1"',
    ):
        assert setting in text, setting


def test_rsyslog_template_output_is_what_ingest_accepts(tmp_path: Path) -> None:
    binary, moddir_args, _ = _rsyslogd()
    out = tmp_path / "out.json"
    port = _free_port()
    stub = _rsyslog_stub(tmp_path, out)
    main = _rsyslog_main(
        tmp_path,
        stub,
        f'module(load="imtcp")\ninput(type="imtcp" port="{port}" address="127.0.0.1")\n',
    )
    daemon = subprocess.Popen(
        [binary, "-n", "-f", str(main), "-i", str(tmp_path / "pid"), *moddir_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_port(port)
        _send_syslog_tcp(port, _syslog_lines())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 2):
            time.sleep(0.1)
    finally:
        daemon.terminate()
        output, _ = daemon.communicate(timeout=10)
    assert out.exists(), output
    body = out.read_bytes()
    # omhttp's batch.format="newline" joins these same lines with newlines.
    _check_relayed(_events_of(body))


# --- (c) syslog-ng ----------------------------------------------------------------------------------


def _syslog_ng_config(tmp_path: Path, *, url: str, port: int) -> Path:
    text = (DEPLOY / "syslog-ng" / "mutt.conf").read_text()
    text = re.sub(r'@define mutt_ingest_url ".*"', f'@define mutt_ingest_url "{url}"', text)
    text = re.sub(r'@define mutt_buffer_dir ".*"', f'@define mutt_buffer_dir "{tmp_path}"', text)
    text = re.sub(r'@define mutt_api_key ".*"', '@define mutt_api_key "test-key"', text)
    (tmp_path / "mutt.conf").write_text(text)
    version = subprocess.run(
        [_need("syslog-ng", "/usr/sbin/syslog-ng"), "--version"], capture_output=True, text=True
    ).stdout
    config_version = re.search(r"Config version: (\d+\.\d+)", version)
    main = tmp_path / "syslog-ng.conf"
    main.write_text(
        f"@version: {config_version.group(1) if config_version else '3.38'}\n"
        '@include "scl.conf"\n'
        f'source s_src {{ network(ip("127.0.0.1") port({port}) transport("tcp")); }};\n'
        f'@include "{tmp_path / "mutt.conf"}"\n'
    )
    return main


def _syslog_ng_has_http(binary: str) -> None:
    modules = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    if "http" not in modules:
        pytest.skip("syslog-ng's http module is not installed (syslog-ng-mod-http)")


def test_syslog_ng_config_syntax(tmp_path: Path) -> None:
    binary = _need("syslog-ng", "/usr/sbin/syslog-ng")
    _syslog_ng_has_http(binary)
    main = _syslog_ng_config(tmp_path, url="http://127.0.0.1:9/api/v2/ingest", port=_free_port())
    result = subprocess.run(
        [binary, "--syntax-only", "-f", str(main)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


class _Capture(http.server.BaseHTTPRequestHandler):
    """Stands in for MUTT's ingest endpoint: keeps each POST's body and headers."""

    bodies: list[tuple[bytes, dict[str, str]]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.bodies.append((self.rfile.read(length), dict(self.headers)))
        payload = b'{"status":"accepted"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def capture_server() -> Iterator[tuple[str, list[tuple[bytes, dict[str, str]]]]]:
    bodies: list[tuple[bytes, dict[str, str]]] = []
    handler = type("Handler", (_Capture,), {"bodies": bodies})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v2/ingest", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_syslog_ng_delivers_events_ingest_accepts(
    tmp_path: Path, capture_server: tuple[str, list[tuple[bytes, dict[str, str]]]]
) -> None:
    binary = _need("syslog-ng", "/usr/sbin/syslog-ng")
    _syslog_ng_has_http(binary)
    url, bodies = capture_server
    port = _free_port()
    main = _syslog_ng_config(tmp_path, url=url, port=port)
    daemon = subprocess.Popen(
        [
            binary,
            "--foreground",
            "--no-caps",
            "--stderr",
            "-f",
            str(main),
            "--persist-file",
            str(tmp_path / "persist"),
            "--pidfile",
            str(tmp_path / "pid"),
            "--control",
            str(tmp_path / "ctl"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_port(port)
        _send_syslog_tcp(port, _syslog_lines())
        deadline = time.monotonic() + 15
        # batch-timeout(1000): the batch goes out within a second or so of the last line.
        while time.monotonic() < deadline and sum(b.count(b"\n") + 1 for b, _ in bodies) < 2:
            time.sleep(0.1)
    finally:
        daemon.terminate()
        output, _ = daemon.communicate(timeout=15)
    assert bodies, f"syslog-ng posted nothing; its output:\n{output}"
    events = [event for body, _ in bodies for event in _events_of(body)]
    assert len(events) == 2, events
    _check_relayed(events)
    assert all(headers.get("X-API-Key") == "test-key" for _, headers in bodies)


# --- snmptrapd --------------------------------------------------------------------------------------


def test_snmptrapd_format_uses_the_separator_events_parses() -> None:
    text = (DEPLOY / "snmptrapd" / "snmptrapd.conf").read_text()
    formats = re.findall(r"^format(?:2| syslog2| print2) (.*)$", text, re.MULTILINE)
    assert len(formats) == 3
    for fmt in formats:
        assert f"%V{VARBIND_SEPARATOR}%#v" in fmt
    assert re.search(r"^outputOption n$", text, re.MULTILINE)
    dropin = (DEPLOY / "snmptrapd" / "snmptrapd-mutt.conf").read_text()
    assert " -On " in dropin


def test_snmptrapd_logs_traps_events_can_read(tmp_path: Path) -> None:
    daemon_binary = _need("snmptrapd", "/usr/sbin/snmptrapd")
    sender = _need("snmptrap")
    conf = tmp_path / "snmptrapd.conf"
    conf.write_text(
        (DEPLOY / "snmptrapd" / "snmptrapd.conf").read_text().replace("CHANGE-ME", "mutt-test")
    )
    log = tmp_path / "traps.log"
    port = _free_port()  # a free TCP port is very likely a free UDP one too
    env = {**os.environ, "MIBS": "", "MIBDIRS": str(tmp_path)}  # no MIB noise: numeric anyway
    daemon = subprocess.Popen(
        [daemon_binary, "-f", "-On", "-Lf", str(log), "-C", "-c", str(conf),
         "-p", str(tmp_path / "pid"), f"udp:127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        time.sleep(1)  # UDP: nothing to poll for readiness
        quoted = "Gi0/1 .1.3.6.1.6.3.1.1.4.1.0 = OID: .1.3.6.1.4.1.9.9.9"
        subprocess.run(
            [sender, "-v", "2c", "-c", "mutt-test", f"127.0.0.1:{port}", "",
             f".{TRAP_OID}", ".1.3.6.1.2.1.31.1.1.1.1.1", "s", quoted],
            check=True, capture_output=True, env=env, timeout=10,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "trap" not in (
            log.read_text(errors="replace") if log.exists() else ""
        ):
            time.sleep(0.1)
    finally:
        daemon.terminate()
        output, _ = daemon.communicate(timeout=10)
    # Not splitlines(): it also splits at RS (0x1e), the very separator under test.
    lines = [line for line in log.read_text(errors="replace").split("\n") if "trap" in line]
    assert lines, output
    item = {"timestamp": "2026-11-22T10:00:00Z", "hostname": "router-1", "message": lines[0]}
    events = _events_of(json.dumps(item).encode())
    # The string varbind quoting another OID does not pose as the trap OID.
    assert events[0].trap_oid == TRAP_OID


# --- (d) systemd ------------------------------------------------------------------------------------


def test_units_are_hardened_and_complete() -> None:
    names = {unit.stem for unit in UNITS}
    assert names == {
        "mutt-ingest",
        "mutt-web",
        "mutt-worker-classify",
        "mutt-worker-classify@",
        "mutt-worker-forward",
        "mutt-beat",
        "mutt-flower",
    }
    for unit in UNITS:
        text = unit.read_text()
        for directive in (
            "User=mutt",
            "NoNewPrivileges=true",
            "ProtectSystem=strict",
            "ProtectHome=true",
            "PrivateTmp=true",
            "ReadWritePaths=/var/lib/mutt",
            "EnvironmentFile=/etc/mutt/mutt.env",
            "Restart=on-failure",
        ):
            assert re.search(rf"^{re.escape(directive)}$", text, re.MULTILINE), (unit, directive)
    commands = {u.stem: re.search(r"^ExecStart=(.*)$", u.read_text(), re.M)[1] for u in UNITS}  # type: ignore[index]
    assert "--config /etc/mutt/gunicorn/ingest.conf.py" in commands["mutt-ingest"]
    assert "'mutt_app.web:create_ingest_app()'" in commands["mutt-ingest"]
    assert "'mutt_app.web:create_app()'" in commands["mutt-web"]
    # The classify worker: N solo-pool processes, instances of a template (mutt_app/worker/shape.py),
    # each with a node name of its own; the unit of that name starts, stops and reloads them.
    classify = commands["mutt-worker-classify@"]
    assert "-Q mutt.classify,mutt.maintenance --pool solo" in classify
    assert "--without-gossip --without-mingle" in classify
    assert commands["mutt-worker-classify"] == "/bin/true"
    template = (DEPLOY / "systemd" / "mutt-worker-classify@.service").read_text()
    for directive in ("PartOf", "ReloadPropagatedFrom", "WantedBy"):
        assert f"\n{directive}=mutt-worker-classify.service\n" in template, directive
    assert "mutt-worker-classify.service" in (DEPLOY / "systemd" / "mutt.target").read_text()
    assert "-Q mutt.forward.page,mutt.forward --pool threads" in commands["mutt-worker-forward"]
    # %h must reach Celery, not systemd (which would put the unit's home directory there).
    assert "--hostname classify-%i@%%h" in classify
    # Through the command that refuses the shipped placeholder password.
    assert commands["mutt-flower"].startswith("/opt/mutt/venv/bin/mutt flower ")
    # `systemctl reload` is SIGHUP: gunicorn replaces its workers, a worker or beat reloads its
    # rules and dynamic configuration (mutt_app/worker/reload.py).
    reloads = {u.stem for u in UNITS if "ExecReload=/bin/kill -HUP $MAINPID" in u.read_text()}
    assert reloads == names - {"mutt-flower", "mutt-worker-classify"}


def test_flower_refuses_the_shipped_placeholder_password(tmp_path: Path) -> None:
    """The k8s Secret's and mutt.env.example's FLOWER_BASIC_AUTH: Flower does not start with
    either (one log line, a failing exit); the k8s container and the unit start it that way."""
    documents = _k8s_documents()
    secret = next(d for d in documents if d["kind"] == "Secret")
    flower = next(d for d in documents if d["metadata"]["name"] == "mutt-flower")
    assert flower["spec"]["template"]["spec"]["containers"][0]["command"][:2] == ["mutt", "flower"]
    example = (DEPLOY / "mutt.env.example").read_text()
    shipped = [
        secret["stringData"]["FLOWER_BASIC_AUTH"],
        re.search(r"^#FLOWER_BASIC_AUTH=(.*)$", example, re.M)[1],  # type: ignore[index]
    ]
    port = _free_port()
    for login in [*shipped, "ops:", "ops"]:
        result = subprocess.run(
            [sys.executable, "-m", "mutt_app.cli", "flower", f"--port={port}",
             "--address=127.0.0.1"],
            env={"PATH": os.environ["PATH"], "MUTT_DATA_DIR": str(tmp_path),
                 "FLOWER_BASIC_AUTH": login},
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1, (login, result.stderr)
        assert "Flower not started: FLOWER_BASIC_AUTH" in lines[0], lines
        if login in shipped:
            assert "placeholder" in lines[0] and "change-me" not in lines[0].lower()
        with socket.socket() as probe:  # nothing listens: Flower never started
            assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = _need("systemd-analyze")
    # verify insists that ExecStart's binary exists: stand-ins for the venv's gunicorn and celery.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("gunicorn", "celery", "mutt"):
        (bindir / name).symlink_to(shutil.which("true") or "/bin/true")
    copies = []
    for unit in [*UNITS, DEPLOY / "systemd" / "mutt.target"]:
        # A template is verified as an instance of it (a classify process).
        copy = tmp_path / unit.name.replace("@.", "@1.")
        copy.write_text(unit.read_text().replace("/opt/mutt/venv/bin/", f"{bindir}/"))
        copies.append(str(copy))
    result = subprocess.run(
        [analyze, "verify", *copies], capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0 and "Failed to initialize manager" in result.stderr:
        pytest.skip(f"systemd-analyze verify cannot run here: {result.stderr.strip()}")
    # Some systemd versions report problems on stderr yet exit 0: any mention of our units fails.
    complaints = [line for line in result.stderr.splitlines() if "mutt" in line]
    assert result.returncode == 0 and complaints == [], result.stderr


def test_gunicorn_configs_load() -> None:
    venv_gunicorn = ROOT / ".venv" / "bin" / "gunicorn"
    gunicorn = str(venv_gunicorn) if venv_gunicorn.exists() else _need("gunicorn")
    defaults = Settings()
    for name, port in (
        ("ingest", defaults.server_port_ingestor),
        ("web", defaults.server_port_webui),
    ):
        # --print-config reads the config file (and so runs it) without loading the app.
        printed = subprocess.run(
            [gunicorn, "--config", str(DEPLOY / "gunicorn" / f"{name}.conf.py"), "--print-config",
             "mutt_app.web:create_app()"],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith("GUNICORN_")},
        ).stdout  # fmt: skip
        # Loopback only, where the nginx site's upstream points; the site listens on MUTT's port.
        site = shipped_site(f"mutt-{name}")
        upstream = re.search(r"^\s*server (127\.0\.0\.1:\d+);", site, re.M)[1]  # type: ignore[index]
        assert re.search(rf"^bind\s+= \['{re.escape(upstream)}'\]$", printed, re.M), printed
        assert re.search(rf"^\s*listen {port};", site, re.M), site
        assert re.search(r"^control_socket_disable\s+= True$", printed, re.M) or (
            "control_socket_disable" not in printed  # gunicorn < 25.1 has no control socket
        )


# --- (e) install.sh ---------------------------------------------------------------------------------


def test_install_script_parses() -> None:
    script = DEPLOY / "install.sh"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = script.read_text()
    assert "set -euo pipefail" in text
    assert "db upgrade" in text


def test_install_script_shellcheck() -> None:
    shellcheck = _need("shellcheck")
    result = subprocess.run(
        [shellcheck, str(DEPLOY / "install.sh")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_env_example_names_every_setting() -> None:
    text = (DEPLOY / "mutt.env.example").read_text()
    named = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))
    missing = {name.upper() for name in Settings.model_fields} - named
    assert missing == set()


# --- (f) Kubernetes ---------------------------------------------------------------------------------


def _k8s_documents() -> list[dict[str, Any]]:
    yaml = yaml_module()
    documents = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        documents.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return documents


def test_k8s_manifests() -> None:
    documents = _k8s_documents()
    for doc in documents:
        assert {"apiVersion", "kind"} <= doc.keys(), doc
        assert doc["kind"] == "Kustomization" or "name" in doc["metadata"], doc
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    assert set(deployments) == {
        "mutt-ingest",
        "mutt-web",
        "mutt-worker-classify",
        "mutt-worker-forward",
        "mutt-beat",
        "mutt-flower",
    }
    services = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Service"}
    for name, deployment in deployments.items():
        spec = deployment["spec"]
        assert (
            spec["selector"]["matchLabels"].items()
            <= spec["template"]["metadata"]["labels"].items()
        )
        containers = spec["template"]["spec"]["containers"]
        container = containers[0]  # MUTT's own; ingest and web have nginx in front (deploy/nginx)
        assert container["image"] and container["command"]
        proxied = name in ("mutt-ingest", "mutt-web")
        assert [c["name"] for c in containers[1:]] == (["nginx"] if proxied else []), name
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert "livenessProbe" in container, name
        refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
        assert refs == {"mutt-config", "mutt-secrets"}
        if proxied:
            # gunicorn listens on loopback: its probes go through nginx's port, as clients do.
            nginx_port = containers[1]["ports"][0]["containerPort"]
            for probe in ("readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"]["path"] == "/health", (name, probe)
                assert container[probe]["httpGet"]["port"] == nginx_port, (name, probe)
            assert "ports" not in container, name
        if name != "mutt-beat":
            port = containers[-1]["ports"][0]["name"]
            assert "readinessProbe" in container, name
            assert services[name]["spec"]["ports"][0]["targetPort"] == port
            assert services[name]["spec"]["selector"] == spec["selector"]["matchLabels"]
    # Workers and beat are probed on their own health port (mutt_app/worker/health.py), at the
    # settings' default port of their kind.
    defaults = Settings()
    for name, port in (
        ("mutt-worker-classify", defaults.health_port_alerter),
        ("mutt-worker-forward", defaults.health_port_moog),
        ("mutt-beat", defaults.health_port_remediation),
    ):
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["health"] == port, name
        for probe, path in (("livenessProbe", LIVE_PATH), ("readinessProbe", READY_PATH)):
            assert container[probe]["httpGet"] == {"path": path, "port": "health"}, (name, probe)
    jobs = [d for d in documents if d["kind"] == "Job"]
    assert [j["spec"]["template"]["spec"]["containers"][0]["command"] for j in jobs] == [
        ["mutt", "db", "upgrade"]
    ]
    kinds = {d["kind"] for d in documents}
    assert {"ConfigMap", "Secret", "Namespace", "Kustomization"} <= kinds
    config = next(d for d in documents if d["kind"] == "ConfigMap")["data"]
    unknown = (
        set(config) - {n.upper() for n in Settings.model_fields} - {"PROMETHEUS_MULTIPROC_DIR"}
    )
    assert unknown == set()
    kustomization = next(d for d in documents if d["kind"] == "Kustomization")
    on_disk = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk


def test_k8s_manifests_match_the_kubernetes_schemas() -> None:
    # kubeconform is on none of the registries this project can install from; kubernetes-validate
    # (test extra) ships the API's JSON schemas, so the check runs offline.
    kv = pytest.importorskip("kubernetes_validate")
    yaml = yaml_module()
    checked = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name == "kustomization.yaml":  # kustomize's own file, not an API resource
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                kv.validate(document, kv.latest_version(), strict=True)
                checked.append(f"{document['kind']}/{document['metadata']['name']}")
    assert len(checked) >= 15 and "PersistentVolumeClaim/mutt-archive" in checked

    # The check has teeth: a misspelt field and a wrong type are both refused.
    deployment = next(yaml.safe_load_all((DEPLOY / "k8s" / "beat.yaml").read_text()))
    misspelt = {**deployment, "spec": {**deployment["spec"], "replica": 1}}
    with pytest.raises(kv.ValidationError):
        kv.validate(misspelt, kv.latest_version(), strict=True)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["image"] = 42
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, kv.latest_version(), strict=True)


def test_k8s_kubeconform() -> None:
    kubeconform = _need("kubeconform")
    files = [
        str(p) for p in sorted((DEPLOY / "k8s").glob("*.yaml")) if p.name != "kustomization.yaml"
    ]
    result = subprocess.run(
        [kubeconform, "-strict", "-summary", *files], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- (g) Redis with Sentinel ------------------------------------------------------------------------


def _started(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    import redis as redis_py

    from tests.services import wait_for

    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: redis_py.Redis(port=port).ping(), 10, f"{argv[1]} on {port}")
    except TimeoutError:
        process.kill()
        raise
    return process


def _sentinel_files_work(redis_conf: str, sentinel_conf: str, tmp_path: Path) -> None:
    """A master and a replica from ``redis_conf``, a Sentinel from ``sentinel_conf``, all local."""
    import redis as redis_py

    from tests.services import free_port, wait_for

    binary = _need("redis-server")
    master_port, replica_port, sentinel_port = free_port(), free_port(), free_port()
    processes = []
    try:
        for name, port, extra in (
            ("master", master_port, []),
            ("replica", replica_port, ["--replicaof", "127.0.0.1", str(master_port)]),
        ):
            conf = tmp_path / f"{name}.conf"
            conf.write_text(redis_conf)
            (tmp_path / name).mkdir()
            argv = [binary, str(conf), "--port", str(port), "--bind", "127.0.0.1",
                    "--dir", str(tmp_path / name), "--daemonize", "no", *extra]  # fmt: skip
            processes.append(_started(argv, port))
        master = redis_py.Redis(port=master_port)
        assert master.config_get("appendonly")["appendonly"] == "yes"
        assert master.config_get("min-replicas-to-write")["min-replicas-to-write"] == "1"
        assert master.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        wait_for(lambda: master.set("k", "v"), 15, "the master to accept writes with its replica")
        # The file's own monitor line, pointed at this test's master.
        monitored = re.sub(
            r"^sentinel monitor mymaster \S+ 6379 2$",
            f"sentinel monitor mymaster 127.0.0.1 {master_port} 2",
            sentinel_conf,
            flags=re.M,
        )
        assert monitored != sentinel_conf
        conf = tmp_path / "sentinel.conf"
        conf.write_text(monitored)
        (tmp_path / "sentinel").mkdir()
        argv = [binary, str(conf), "--sentinel", "--port", str(sentinel_port), "--bind",
                "127.0.0.1", "--dir", str(tmp_path / "sentinel"), "--daemonize", "no"]  # fmt: skip
        processes.append(_started(argv, sentinel_port))
        sentinel = redis_py.Redis(port=sentinel_port, decode_responses=True)
        wait_for(lambda: sentinel.sentinel_master("mymaster")["num-slaves"] == 1, 20,
                 "the sentinel to find the replica")  # fmt: skip
        assert int(sentinel.sentinel_get_master_addr_by_name("mymaster")[1]) == master_port
        # min-replicas-to-write: a master without its replica refuses writes (no split brain).
        processes[1].kill()
        processes[1].wait(10)
        master.config_set("min-replicas-max-lag", "1")
        wait_for(lambda: _refuses_writes(master), 20, "the master to refuse writes alone")
    finally:
        for process in processes:
            process.kill()
            process.wait(10)


def _refuses_writes(client: Any) -> bool:
    import redis as redis_py

    try:
        client.set("k", "v")
    except redis_py.ResponseError as exc:
        return "NOREPLICAS" in str(exc)
    return False


def test_systemd_redis_and_sentinel_files_work(tmp_path: Path) -> None:
    directory = DEPLOY / "systemd" / "redis"
    sentinel_conf = (directory / "sentinel.conf").read_text()
    # Only this test's directory may be written; the file's own port and bind are overridden.
    sentinel_conf = sentinel_conf.replace("dir /var/lib/redis-sentinel-mutt\n", "")
    _sentinel_files_work((directory / "redis-mutt.conf").read_text(), sentinel_conf, tmp_path)
    unit = (directory / "redis-sentinel-mutt.service").read_text()
    assert "ExecStart=/usr/bin/redis-server /etc/redis/sentinel-mutt.conf --sentinel" in unit
    assert re.search(r"^Restart=always$", unit, re.M)
    assert "ReadWritePaths=/etc/redis /var/lib/redis-sentinel-mutt" in unit


def test_k8s_redis_files_work_and_mutt_is_pointed_at_its_sentinels(tmp_path: Path) -> None:
    from mutt_app.config import load_settings

    documents = _k8s_documents()
    files = next(d for d in documents if d.get("metadata", {}).get("name") == "mutt-redis-config")[
        "data"
    ]
    pod = "mutt-redis-0"
    redis_conf = files["redis.conf"].replace("${POD_NAME}", pod)
    redis_conf = "\n".join(
        line for line in redis_conf.splitlines() if not line.startswith(("port ", "dir "))
    )
    sentinel_conf = "\n".join(
        line.replace("${POD_NAME}", "127.0.0.1").replace(
            "127.0.0.1.mutt-redis.mutt.svc.cluster.local", "127.0.0.1"
        )
        for line in files["sentinel.conf"].splitlines()
        if not line.startswith(("port ", "dir "))
    )
    _sentinel_files_work(redis_conf.replace(f"{pod}.mutt-redis.mutt.svc.cluster.local", "127.0.0.1"),
                         sentinel_conf, tmp_path)  # fmt: skip
    statefulset = next(d for d in documents if d["kind"] == "StatefulSet")
    config = next(d for d in documents if d.get("metadata", {}).get("name") == "mutt-config")[
        "data"
    ]
    settings = load_settings(config)
    pods = [f"mutt-redis-{n}" for n in range(statefulset["spec"]["replicas"])]
    assert [host for host, _ in settings.redis_sentinel_hosts] == [
        f"{p}.mutt-redis.mutt.svc.cluster.local" for p in pods
    ]
    assert settings.min_replicas == 1
