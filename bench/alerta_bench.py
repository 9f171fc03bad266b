"""Alerta 9.1, a peer users pick for MUTT's job, driven with single-alert POSTs: alerts/s accepted.

    bench/alerta_bench.py --venv /tmp/alerta-venv --database-url postgresql://postgres@127.0.0.1:5432/alerta_bench

The virtualenv holds ``alerta-server==9.1.0``, ``gunicorn`` and ``psycopg2-binary`` (made if missing);
the database is dropped and created afresh for each run. Alerta runs under gunicorn with two
workers (started once with one first, so that its schema exists before two workers race to create
it), as issue 21 describes, and THREADS senders (Python threads, or wrk's connections with
``--driver wrk``) each post one alert per request for SECONDS, closed loop. Not run in CI: it is a
yardstick for MUTT's single-event figure (``bench/compare.sh . 5000 1 20 128 --forward-share
0.01``, and with ``--driver wrk`` appended when Alerta is driven by wrk), measured in the same
session on the same machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import psycopg2
import requests
from wrk_driver import run_wrk

PORT = 8085


def ensure_venv(venv: Path) -> Path:
    """The virtualenv's gunicorn, after installing Alerta there if it is not yet."""
    gunicorn = venv / "bin" / "gunicorn"
    if not gunicorn.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "alerta-server==9.1.0", "gunicorn",
             "psycopg2-binary"],
            check=True,
        )  # fmt: skip
    return gunicorn


def fresh_database(url: str) -> None:
    """Create the database ``url`` names, empty: dropped first if it exists.

    Alerta keeps each alert's history in its row, so a database left by earlier runs makes every
    later run slower; each run starts from nothing, as compare.sh empties MUTT's audit log.
    """
    parts = urllib.parse.urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    connection = psycopg2.connect(admin)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()


def serve(gunicorn: Path, config: Path, database_url: str, workers: int) -> subprocess.Popen[bytes]:
    """Alerta under gunicorn with ``workers`` processes, once it answers."""
    # Alerta's environment wins over its config file: a DATABASE_URL exported for MUTT's
    # benchmarks (compare.sh needs one) would point it at MUTT's database.
    env = {**os.environ, "ALERTA_SVR_CONF_FILE": str(config), "DATABASE_URL": database_url}
    process = subprocess.Popen(
        [str(gunicorn), "-w", str(workers), "-b", f"127.0.0.1:{PORT}", "--log-level", "warning",
         "alerta:create_app()"],
        env=env,
    )  # fmt: skip
    for _ in range(120):
        try:
            if requests.get(f"http://127.0.0.1:{PORT}/management/healthcheck", timeout=2).ok:
                return process
        except requests.RequestException:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("Alerta did not start")


def drive(threads: int, seconds: float) -> tuple[int, int]:
    """Post single alerts from ``threads`` senders for ``seconds``; (accepted, failed)."""
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def sender(n: int) -> None:
        session = requests.Session()
        ok = failed = seq = 0
        while time.monotonic() < deadline:
            seq += 1
            alert = {
                "resource": f"router-{n % 50}",
                "event": f"LinkDown-{seq % 100}",
                "environment": "Production",
                "severity": "major",
                "service": ["network"],
                "text": f"Interface Gi0/{seq % 48} changed state to down",
            }
            response = session.post(f"http://127.0.0.1:{PORT}/alert", json=alert, timeout=30)
            if response.status_code == 201:
                ok += 1
            else:
                failed += 1
        with lock:
            counts["ok"] += ok
            counts["failed"] += failed

    workers = [threading.Thread(target=sender, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return counts["ok"], counts["failed"]


def main() -> int:
    """Start Alerta, drive it, print alerts/s."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path("/tmp/alerta-venv"))
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--threads", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--driver",
        choices=("threads", "wrk"),
        default="threads",
        help="who posts: Python threads with requests, or wrk (wrk_driver.py says why)",
    )
    args = parser.parse_args()

    gunicorn = ensure_venv(args.venv)
    fresh_database(args.database_url)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "alertad.conf"
        config.write_text(f"DATABASE_URL = {args.database_url!r}\nAUTH_REQUIRED = False\n")
        first = serve(gunicorn, config, args.database_url, 1)  # creates the schema alone
        first.terminate()
        first.wait(30)
        server = serve(gunicorn, config, args.database_url, 2)
        try:
            if args.driver == "wrk":
                result = run_wrk(
                    "alerta.lua", f"http://127.0.0.1:{PORT}", args.threads, args.seconds
                )
                ok, failed = result.succeeded, result.failed_status + result.socket_errors
            else:
                ok, failed = drive(args.threads, args.seconds)
        finally:
            server.terminate()
            server.wait(30)
    senders = "wrk connections" if args.driver == "wrk" else "senders"
    print(
        f"alerta 9.1 (gunicorn -w 2): {ok} alerts accepted ({ok / args.seconds:,.0f}/s),"
        f" {failed} failed, {args.threads} {senders}, single-alert POSTs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
