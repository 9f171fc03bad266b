"""The nginx sites of the deployment kit (deploy/nginx), checked by a real nginx (``nginx -t``, and
the ingest site running in front of a stand-in for gunicorn: its body cap and its per-address limit)
and against what MUTT and the rest of the kit say (body cap, ports, the Kubernetes sidecar's copy).

They run in front of gunicorn so that slow clients wait in nginx, not in a gunicorn thread
(tests/e2e/test_slow_clients.py shows it with real processes). Skips, naming nginx, where it is not
installed; ``.ci/bootstrap`` installs it.
"""

from __future__ import annotations

import http.client
import http.server
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mutt_app.config import Settings
from tests.deploy_files import DEPLOY, yaml_module
from tests.nginx_server import (
    check,
    main_config,
    nginx_argv,
    nginx_binary,
    shipped_site,
    site_text,
)
from tests.services import free_port, wait_for

SITES = ("mutt-ingest", "mutt-web")


def _directive(site: str, name: str) -> list[str]:
    """The values of every ``name ...;`` line of ``site``."""
    return re.findall(rf"^\s*{re.escape(name)}\s+([^;]*);", site, re.M)


def _bytes(size: str) -> int:
    units = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    number, unit = re.fullmatch(r"(\d+)([kmg]?)", size.lower()).groups()  # type: ignore[union-attr]
    return int(number) * units[unit]


def _nginx() -> str:
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed")
    return binary


class _Accept(http.server.BaseHTTPRequestHandler):
    """Stands in for gunicorn: reads a POST's body and answers 200."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def ingest_nginx(tmp_path: Path) -> Iterator[int]:
    """nginx with the shipped ingest site in front of a stand-in upstream; yields nginx's port."""
    binary = _nginx()
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    site = site_text(
        "mutt-ingest",
        tmp_path / "logs",
        listen_port=port,
        upstream=f"127.0.0.1:{upstream.server_address[1]}",
    )
    nginx = subprocess.Popen(nginx_argv(binary, main_config(tmp_path, site)))
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), 1).close() is None, 10,
                 "nginx to listen")  # fmt: skip
        yield port
    finally:
        nginx.terminate()
        nginx.wait(10)
        upstream.shutdown()
        upstream.server_close()


def _post_from(port: int, source: str, body: bytes = b"[]") -> int:
    """POST ``body`` through nginx from the loopback address ``source``; the answer's status."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=(source, 0)
    )
    try:
        connection.request("POST", "/api/v2/ingest", body=body)
        return connection.getresponse().status
    finally:
        connection.close()


def test_nginx_accepts_both_shipped_sites_together(tmp_path: Path) -> None:
    binary = _nginx()
    # As a host has them, side by side in one http context: zones, maps and log formats must not
    # clash. Only the log directory moves (nginx -t opens the logs).
    sites = [site_text(name, tmp_path / "logs") for name in SITES]
    result = check(binary, main_config(tmp_path, *sites))
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr

    # The check has teeth: a misspelt directive fails it.
    broken = main_config(
        tmp_path / "broken", sites[0].replace("client_body_timeout", "client_body_timeut")
    )
    assert check(binary, broken).returncode != 0


def test_nginx_sites_buffer_slow_clients_within_the_ingest_limits() -> None:
    defaults = Settings()
    for name in SITES:
        site = shipped_site(name)
        location = site[site.index("location / {") :]
        # Whole requests and whole answers between nginx and gunicorn: the point of the proxy.
        assert _directive(location, "proxy_request_buffering") == ["on"], name
        assert _directive(location, "proxy_buffering") == ["on"], name
        for timeout in ("client_header_timeout", "client_body_timeout", "send_timeout"):
            assert len(_directive(site, timeout)) == 1, (name, timeout)
        # Keep-alive to gunicorn needs HTTP/1.1 and an empty Connection header.
        assert _directive(location, "proxy_http_version") == ["1.1"], name
        assert 'Connection ""' in _directive(location, "proxy_set_header"), name
        assert "X-Forwarded-For $proxy_add_x_forwarded_for" in _directive(
            location, "proxy_set_header"
        )
        assert re.search(r"^\s*keepalive \d+;", site, re.M), name
        assert _directive(site, "limit_conn_status") == ["429"], name
    ingest = shipped_site("mutt-ingest")
    # nginx refuses what MUTT would refuse, and nothing MUTT would accept.
    (cap,) = _directive(ingest, "client_max_body_size")
    assert _bytes(cap) == defaults.max_ingest_body_bytes
    (buffer,) = _directive(ingest, "client_body_buffer_size")
    assert _bytes(buffer) <= _bytes(cap)
    # A gunicorn keep-alive connection outlives nginx's use of it (no request on a closing one).
    upstream = ingest[ingest.index("upstream mutt_ingest {") :]
    (upstream_idle,) = _directive(upstream[: upstream.index("}")], "keepalive_timeout")
    gunicorn_keepalive = re.search(
        r"^keepalive = (\d+)$", (DEPLOY / "gunicorn" / "ingest.conf.py").read_text(), re.M
    )
    assert gunicorn_keepalive is not None
    assert int(upstream_idle.rstrip("s")) < int(gunicorn_keepalive[1])


def test_k8s_nginx_sidecars_read_the_shipped_sites() -> None:
    yaml = yaml_module()
    config = yaml.safe_load((DEPLOY / "k8s" / "nginx.yaml").read_text())
    assert config["kind"] == "ConfigMap" and config["metadata"]["name"] == "mutt-nginx"
    for name in SITES:
        # The same text, so the sidecar and a systemd host behave alike: change both together.
        assert config["data"][f"{name}.conf"] == shipped_site(name), name
        deployment = next(yaml.safe_load_all((DEPLOY / "k8s" / f"{name[5:]}.yaml").read_text()))
        pod = deployment["spec"]["template"]["spec"]
        nginx = next(c for c in pod["containers"] if c["name"] == "nginx")
        mounts = {m["name"]: m["mountPath"] for m in nginx["volumeMounts"]}
        assert mounts["nginx-site"] == "/etc/nginx/conf.d"
        volume = next(v for v in pod["volumes"] if v["name"] == "nginx-site")
        assert volume["configMap"]["name"] == "mutt-nginx"
        assert [i["key"] for i in volume["configMap"]["items"]] == [f"{name}.conf"]
        (listen,) = _directive(shipped_site(name), "listen")
        assert nginx["ports"][0]["containerPort"] == int(listen)
    mutt_config = next(
        d
        for d in yaml.safe_load_all((DEPLOY / "k8s" / "configmap.yaml").read_text())
        if d and d["kind"] == "ConfigMap"
    )["data"]
    # The sidecar appends X-Forwarded-For: the throttles must read it, or every client is one.
    assert mutt_config["INGEST_TRUSTED_PROXIES"] == mutt_config["WEBUI_TRUSTED_PROXIES"] == "1"


def test_systemd_hosts_get_the_sites_and_trust_nginx() -> None:
    install = (DEPLOY / "install.sh").read_text()
    assert 'deploy/nginx/$site.conf" "/etc/nginx/conf.d/$site.conf"' in install
    assert f"for site in {' '.join(SITES)}; do" in install
    example = (DEPLOY / "mutt.env.example").read_text()
    assert re.search(r"^INGEST_TRUSTED_PROXIES=1$", example, re.M)
    assert re.search(r"^WEBUI_TRUSTED_PROXIES=1$", example, re.M)


def test_one_address_past_its_request_limit_is_answered_429_and_others_are_served(
    ingest_nginx: int,
) -> None:
    (limit,) = (int(v.split()[1]) for v in _directive(shipped_site("mutt-ingest"), "limit_conn"))
    held = []
    try:
        # `limit` requests in progress from one address: whole headers, bodies still to come.
        for _ in range(limit):
            sock = socket.create_connection(("127.0.0.1", ingest_nginx), 5, ("127.0.0.2", 0))
            sock.sendall(b"POST /api/v2/ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[")
            held.append(sock)
        deadline = time.monotonic() + 10
        while (status := _post_from(ingest_nginx, "127.0.0.2")) != 429:
            assert time.monotonic() < deadline, f"one past the limit answered {status}"
            time.sleep(0.1)
        assert _post_from(ingest_nginx, "127.0.0.3") == 200
    finally:
        for sock in held:
            sock.close()
    # Once they are done, that address is served again.
    wait_for(lambda: _post_from(ingest_nginx, "127.0.0.2") == 200, 10, "the address to be served")


def test_a_body_over_the_cap_is_refused_by_nginx_and_one_at_the_cap_passes(
    ingest_nginx: int,
) -> None:
    cap = Settings().max_ingest_body_bytes
    # Longer than client_body_buffer_size: it waits in a temporary file, then goes on whole.
    assert _post_from(ingest_nginx, "127.0.0.2", b"x" * cap) == 200
    assert _post_from(ingest_nginx, "127.0.0.2", b"x" * (cap + 1)) == 413
