"""Ingest over TLS, with client certificates, as the deploy kit ships it: the real syslog-ng with
deploy/syslog-ng/mutt.conf (its tls() block uncommented) posting over HTTPS to a live stack.

Two places TLS may end, both tested: gunicorn itself, under the shipped deploy/gunicorn/ingest.conf.py
with INGEST_TLS_CERT_PATH / _KEY_PATH / _CLIENT_CA_PATH; and the shipped nginx site with its TLS lines
uncommented, in front of a plain-HTTP gunicorn. Each time syslog-ng's lines are audited, a client
without a certificate is refused, and plain HTTP to the TLS port is not served. The certificates (a
CA, a server certificate for 127.0.0.1, a client certificate) are made by the openssl command.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import requests

from tests.e2e.conftest import StackFactory
from tests.e2e.stack import Stack
from tests.factories import posted_event
from tests.integration.test_deploy import (
    _need,
    _send_syslog_tcp,
    _syslog_ng_config,
    _syslog_ng_has_http,
    _wait_port,
)
from tests.nginx_server import nginx_binary
from tests.services import free_port

KEY = "e2e-tls-ingest-key"


@dataclass(frozen=True)
class Certificates:
    """PEM files under one directory, named as deploy/syslog-ng/mutt.conf's tls() block reads them."""

    directory: Path

    @property
    def ca(self) -> str:
        return str(self.directory / "ca.pem")

    @property
    def server(self) -> tuple[str, str]:
        return str(self.directory / "server.crt"), str(self.directory / "server.key")

    @property
    def client(self) -> tuple[str, str]:
        return str(self.directory / "client.crt"), str(self.directory / "client.key")


def _openssl(*args: str) -> None:
    subprocess.run([_need("openssl"), *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by the CA."""
    directory = tmp_path / "certs"
    directory.mkdir()
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"]
    _openssl(
        "req", "-x509", *key, "-subj", "/CN=MUTT test CA",
        "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.pem"),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    for name, usage, extra in (
        ("server", "serverAuth", ["-addext", "subjectAltName=IP:127.0.0.1"]),
        ("client", "clientAuth", []),
    ):
        _openssl(
            "req", "-x509", *key, "-subj", f"/CN=mutt-test-{name}",
            "-CA", str(directory / "ca.pem"), "-CAkey", str(directory / "ca.key"),
            "-keyout", str(directory / f"{name}.key"), "-out", str(directory / f"{name}.crt"),
            "-addext", "basicConstraints=CA:FALSE", "-addext", f"extendedKeyUsage={usage}",
            *extra,
        )  # fmt: skip
    return Certificates(directory)


def _https_ready(url: str, certs: Certificates) -> bool:
    try:
        return requests.get(url, verify=certs.ca, cert=certs.client, timeout=1).ok
    except requests.RequestException:
        return False


def _post(url: str, certs: Certificates, *, cert: tuple[str, str] | None) -> requests.Response:
    body = orjson.dumps([posted_event("tls direct post")])
    headers = {"Content-Type": "application/json", "X-API-Key": KEY}
    return requests.post(url, data=body, headers=headers, verify=certs.ca, cert=cert, timeout=10)


def _syslog_ng_delivers(tmp_path: Path, stack: Stack, url: str, certs: Certificates) -> None:
    """The shipped syslog-ng configuration, TLS block uncommented, relays two lines to ``url``;
    both are audited."""
    binary = _need("syslog-ng", "/usr/sbin/syslog-ng")
    _syslog_ng_has_http(binary)
    port = free_port()
    workdir = tmp_path / "syslog-ng"
    workdir.mkdir()
    main = _syslog_ng_config(workdir, url=url, port=port)
    conf = workdir / "mutt.conf"
    text, uncommented = re.subn(
        r"^(\s*)#(tls\(|    (?:ca|cert|key)-file\(|    peer-verify\(|\))",
        r"\1\2",
        conf.read_text(),
        flags=re.M,
    )
    assert uncommented == 6, "deploy/syslog-ng/mutt.conf: its six tls() lines, commented"
    text = re.sub(r'@define mutt_tls_dir ".*"', f'@define mutt_tls_dir "{certs.directory}"', text)
    conf.write_text(re.sub(r'@define mutt_api_key ".*"', f'@define mutt_api_key "{KEY}"', text))
    tag = uuid.uuid4().hex[:8]
    now = time.strftime("%b %d %H:%M:%S", time.gmtime())
    lines = [
        f"<27>{now} router-tls sshd[7]: tls {tag} Interface Gi0/1 changed state to down",
        f"<164>{now} router-tls ifmgr[8]: tls {tag} Interface Gi0/2 changed state to up",
    ]
    daemon = subprocess.Popen(
        [binary, "--foreground", "--no-caps", "--stderr", "-f", str(main),
         "--persist-file", str(workdir / "persist"), "--pidfile", str(workdir / "pid"),
         "--control", str(workdir / "ctl")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait_port(port)
        _send_syslog_tcp(port, lines)
        stack.wait_audited(2, timeout=30)
    except AssertionError:
        daemon.terminate()
        raise AssertionError(f"syslog-ng said:\n{daemon.communicate(timeout=15)[0]}") from None
    finally:
        daemon.terminate()
        daemon.wait(15)
    messages = sorted(row.message for row in stack.audit_rows())
    assert messages == sorted(line.split(": ", 1)[1] for line in lines)


def test_syslog_ng_posts_over_tls_to_gunicorn_which_requires_client_certificates(
    make_stack: StackFactory, tmp_path: Path, certs: Certificates
) -> None:
    stack = make_stack(INGEST_API_KEY=KEY)
    stack.start_worker(queues="mutt.classify", concurrency=1)
    https = f"https://127.0.0.1:{stack.ingest_port}"
    stack.start_shipped_ingest(
        ready=lambda: _https_ready(f"{https}/health", certs),
        INGEST_TLS_CERT_PATH=certs.server[0],
        INGEST_TLS_KEY_PATH=certs.server[1],
        INGEST_TLS_CLIENT_CA_PATH=certs.ca,
    )

    _syslog_ng_delivers(tmp_path, stack, f"{https}/api/v2/ingest", certs)

    assert _post(f"{https}/api/v2/ingest", certs, cert=certs.client).status_code == 200
    # Without a client certificate the handshake fails: no request is read.
    with pytest.raises(requests.exceptions.SSLError):
        _post(f"{https}/api/v2/ingest", certs, cert=None)
    # Plain HTTP to the TLS port: gunicorn reads it as a bad handshake and closes the connection.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{stack.ingest_port}/health", timeout=10)
    stack.wait_audited(3)


def _nginx_tls(site: str, certs: Certificates) -> str:
    """The shipped ingest site with its TLS lines uncommented, as its comments say to."""
    site, listens = re.subn(r"^(\s*listen \S+);", r"\1 ssl;", site, flags=re.M)
    site, uncommented = re.subn(r"^(\s*)#(ssl_\w+ )", r"\1\2", site, flags=re.M)
    assert (listens, uncommented) == (1, 5), "deploy/nginx/mutt-ingest.conf: its TLS lines"
    for shipped, made in (
        ("/etc/mutt/certs/server.crt", certs.server[0]),
        ("/etc/mutt/certs/server.key", certs.server[1]),
        ("/etc/mutt/certs/ca.pem", certs.ca),
    ):
        site = site.replace(shipped, made)
    return site


def test_syslog_ng_posts_over_tls_to_the_nginx_site_which_requires_client_certificates(
    make_stack: StackFactory, tmp_path: Path, certs: Certificates
) -> None:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (.ci/bootstrap installs it)")
    stack = make_stack(INGEST_API_KEY=KEY, INGEST_TRUSTED_PROXIES="1")
    with stack.together():
        stack.start_worker(queues="mutt.classify", concurrency=1)
        stack.start_shipped_ingest()
        stack.start_proxy(
            edit=lambda site: _nginx_tls(site, certs),
            ready=lambda: _https_ready(
                f"https://127.0.0.1:{stack.proxy_ports['ingest']}/health", certs
            ),
        )
    https = f"https://127.0.0.1:{stack.proxy_ports['ingest']}"

    _syslog_ng_delivers(tmp_path, stack, f"{https}/api/v2/ingest", certs)

    assert _post(f"{https}/api/v2/ingest", certs, cert=certs.client).status_code == 200
    # nginx finishes the handshake, then answers 400 ("No required SSL certificate was sent").
    assert _post(f"{https}/api/v2/ingest", certs, cert=None).status_code == 400
    plain = requests.get(f"http://127.0.0.1:{stack.proxy_ports['ingest']}/health", timeout=10)
    assert plain.status_code == 400  # "The plain HTTP request was sent to HTTPS port"
    stack.wait_audited(3)
    stack.settle()
    assert stack.audited() == 3  # the refused requests never reached gunicorn
