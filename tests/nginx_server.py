"""The shipped nginx site files (deploy/nginx) run by a real nginx, for the deploy and e2e tests.

Only the listen address, the upstream address and the log directory are changed; every other line
is the shipped one. The main configuration around a site gives nginx its own error log, pid file and
temporary directories under the test's directory, and keeps it in the foreground (``daemon off``),
so it never meets a system nginx; whoever starts it stops it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.deploy_files import DEPLOY

SITES = DEPLOY / "nginx"


def nginx_binary() -> str | None:
    """nginx from PATH or Debian's /usr/sbin (not on a non-root PATH), or None."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def shipped_site(name: str) -> str:
    """deploy/nginx/``name``.conf as shipped (``mutt-ingest``, ``mutt-web``)."""
    return (SITES / f"{name}.conf").read_text()


def site_text(
    name: str, log_dir: Path, *, listen_port: int | None = None, upstream: str | None = None
) -> str:
    """deploy/nginx/``name``.conf logging under ``log_dir``, and (when given) listening on
    127.0.0.1:``listen_port`` and proxying to ``upstream`` (host:port)."""
    text = shipped_site(name)
    listen = rf"\g<1>listen 127.0.0.1:{listen_port};" if listen_port else r"\g<0>"
    text, listens = re.subn(r"^(\s*)listen \d+;", listen, text, flags=re.M)
    server = rf"\g<1>server {upstream};" if upstream else r"\g<0>"
    text, servers = re.subn(r"^(\s*)server 127\.0\.0\.1:\d+;", server, text, flags=re.M)
    assert (listens, servers) == (1, 1), f"{name}.conf: one listen and one upstream server expected"
    return text.replace("/var/log/nginx/", f"{log_dir}/")


def main_config(root: Path, *sites: str) -> Path:
    """An nginx.conf under ``root`` that includes ``sites`` (http context); returns its path."""
    for directory in ("logs", "temp", "sites"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    for number, site in enumerate(sites):
        (root / "sites" / f"{number}.conf").write_text(site)
    temp = root / "temp"
    # As root nginx would run its workers as nobody, who cannot write the test's directories.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = root / "nginx.conf"
    conf.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {root / 'nginx.pid'};\n"
        f"error_log {root / 'logs' / 'error.log'} info;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"  client_body_temp_path {temp / 'body'};\n  proxy_temp_path {temp / 'proxy'};\n"
        f"  fastcgi_temp_path {temp / 'fastcgi'};\n  uwsgi_temp_path {temp / 'uwsgi'};\n"
        f"  scgi_temp_path {temp / 'scgi'};\n"
        f"  include {root / 'sites'}/*.conf;\n"
        "}\n"
    )
    return conf


def nginx_argv(binary: str, conf: Path, *extra: str) -> list[str]:
    """nginx on ``conf`` with its prefix and start-up error log beside it (not /var/log/nginx)."""
    root = conf.parent
    return [binary, "-p", str(root), "-e", str(root / "logs" / "error.log"), "-c", str(conf),
            *extra]  # fmt: skip


def check(binary: str, conf: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on ``conf``."""
    return subprocess.run(
        nginx_argv(binary, conf, "-t"), capture_output=True, text=True, timeout=30
    )
