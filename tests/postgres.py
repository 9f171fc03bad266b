"""Private PostgreSQL servers for the tests: a cluster started from the installed server binaries
(as the ``postgres`` system user: initdb refuses root, and CI runs as root), and a primary with a
streaming standby to promote."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg2

from tests.services import free_port, wait_for


def _pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")


class PostgresCluster:
    """A private PostgreSQL cluster: superuser ``postgres`` trusted, other roles need passwords.

    ``server_options`` are extra ``-c name=value`` settings given at every start.
    """

    SUPERUSER = "postgres"
    # Durability off for speed: the tests kill server processes, never the machine, so what a
    # process wrote is in the kernel's cache either way.
    FAST_OPTIONS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}

    def __init__(self, server_options: dict[str, str] | None = None) -> None:
        self.bindir = _pg_bindir()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mutt-pg-"))
        self.data = self.dir / "data"
        self.socket_dir = self.dir / "run"
        self.as_user: str | None = "postgres" if os.geteuid() == 0 else None
        self.server_options = {**self.FAST_OPTIONS, **(server_options or {})}

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_user:
            command = ["runuser", "-u", self.as_user, "--", *command]
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if done.returncode:
            log = self.dir / "pg.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:1])} failed ({done.returncode}): "
                f"{done.stderr.decode(errors='replace')}\n{tail}"
            )

    def _make_dirs(self) -> None:
        self.socket_dir.mkdir(parents=True)
        if self.as_user:
            entry = pwd.getpwnam(self.as_user)
            for path in (self.dir, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self) -> PostgresCluster:
        """initdb a new cluster, then start it."""
        self._make_dirs()
        self._run("initdb", "-D", str(self.data), "-U", self.SUPERUSER, "-A", "trust", "-E", "UTF8")
        (self.data / "pg_hba.conf").write_text(
            f"local all all trust\n"
            f"host all {self.SUPERUSER} 127.0.0.1/32 trust\n"
            f"host replication {self.SUPERUSER} 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        return self.launch()

    def launch(self) -> PostgresCluster:
        """Start the server on this cluster's data directory (``pg_ctl start``, waiting)."""
        settings = {
            "listen_addresses": "127.0.0.1",
            "max_connections": "200",
            "timezone": "UTC",
            **self.server_options,
        }
        options = f"-p {self.port} -k {self.socket_dir} " + " ".join(
            f"-c {name}={value}" for name, value in settings.items()
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "pg.log"),
                  "-w", "start")  # fmt: skip
        return self

    @classmethod
    def standby_of(
        cls, primary: PostgresCluster, server_options: dict[str, str] | None = None
    ) -> PostgresCluster:
        """A streaming standby of ``primary`` (``pg_basebackup -R``), started."""
        standby = cls(server_options)
        standby._make_dirs()
        standby._run("pg_basebackup", "-D", str(standby.data), "-h", "127.0.0.1",
                     "-p", str(primary.port), "-U", cls.SUPERUSER, "-R", "-X", "stream",
                     "-c", "fast")  # fmt: skip
        return standby.launch()

    def url(
        self, dbname: str = "postgres", user: str | None = None, password: str | None = None
    ) -> str:
        auth = user or self.SUPERUSER
        if password:
            auth += f":{password}"
        return f"postgresql+psycopg2://{auth}@127.0.0.1:{self.port}/{dbname}"

    def admin(self, dbname: str = "postgres"):  # type: ignore[no-untyped-def]
        """An autocommit superuser connection."""
        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user=self.SUPERUSER, dbname=dbname
        )
        conn.autocommit = True
        return conn

    def query(self, sql: str, dbname: str = "postgres") -> object:
        """The first column of the first row of ``sql`` (None if it returns no rows), as the
        superuser, outside any transaction."""
        with contextlib.closing(self.admin(dbname)) as conn, conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone() if cur.description else None
            return row[0] if row else None

    def create_database(self, name: str, template: str | None = None) -> None:
        with contextlib.closing(self.admin()) as conn, conn.cursor() as cur:
            cur.execute(
                f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
            )

    def drop_database(self, name: str) -> None:
        with contextlib.closing(self.admin()) as conn, conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop_hard(self) -> None:
        """``pg_ctl stop -m immediate``: every backend dies at once, as in a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.stop_hard()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresStandbyPair:
    """A primary and a synchronous streaming standby, for failover tests.

    Replication is synchronous (``synchronous_standby_names='*'``, ``synchronous_commit=on``): a
    commit is acknowledged once the standby has it, so promoting the standby loses no committed
    row. That is what MUTT's docs require of a production pair; with asynchronous replication the
    last commits before a crash may be missing on the promoted standby. The standby is started
    without ``synchronous_standby_names``, so once promoted (alone) it does not wait for a standby.
    """

    def __init__(self) -> None:
        self.primary = PostgresCluster(
            {
                "wal_level": "replica",
                "max_wal_senders": "5",
                "synchronous_commit": "on",
                "synchronous_standby_names": "'*'",
            }
        )
        self.standby: PostgresCluster | None = None

    def start(self) -> PostgresStandbyPair:
        try:
            self.primary.start()
            self.standby = PostgresCluster.standby_of(self.primary, {"synchronous_commit": "on"})
            wait_for(self.streaming, 30, "the standby to stream from the primary")
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def ports(self) -> tuple[int, int]:
        assert self.standby is not None
        return self.primary.port, self.standby.port

    def url(self, dbname: str = "postgres", user: str = PostgresCluster.SUPERUSER) -> str:
        """libpq's multi-host URL naming both servers, writes going to whichever is the primary."""
        first, second = self.ports
        return (
            f"postgresql://{user}@127.0.0.1:{first},127.0.0.1:{second}/{dbname}"
            "?target_session_attrs=read-write"
        )

    def streaming(self) -> bool:
        """True when the primary sees the standby streaming, synchronously."""
        state = self.primary.query(
            "SELECT string_agg(state || '/' || sync_state, ',') FROM pg_stat_replication"
        )
        return state == "streaming/sync"

    def stop_primary_hard(self) -> None:
        """Stop the primary as a crash would (``pg_ctl stop -m immediate``)."""
        self.primary.stop_hard()

    def promote(self) -> None:
        """Promote the standby (``pg_ctl promote``) and wait until it takes writes."""
        assert self.standby is not None
        self.standby._run("pg_ctl", "-D", str(self.standby.data), "-w", "promote")
        wait_for(
            lambda: self.standby.query("SELECT NOT pg_is_in_recovery()") is True,  # type: ignore[union-attr]
            30,
            "the promoted standby to leave recovery",
        )

    def stop(self) -> None:
        if self.standby is not None:
            self.standby.stop()
        self.primary.stop()
