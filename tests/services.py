"""Private Redis servers for the tests, started from the installed server binary, and
:class:`ServerProcess`, what every other real server a test runs (OpenBao, Prometheus) builds on.
PostgreSQL's are in :mod:`tests.postgres`.

Why not pytest-redis / pytest-postgresql: the tests need control those plugins do not give (restart
Redis with AOF, change ``requirepass`` mid-test, password-authenticated PostgreSQL roles), and
PostgreSQL refuses to initdb as root (CI runs as root).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

import redis

# Test servers take ports below the kernel's ephemeral range (Linux's default: 32768-60999): a
# port from bind(0) could, between its handing out and the server's bind, become the source port of
# any outgoing connection on the machine (another xdist worker's, Redis's, PostgreSQL's), and the
# server would then fail to bind. Each xdist worker has a slice of its own, walked in order, so no
# two workers or parts of one stack share a port, and a server restarted on its port finds it still
# free.
_PORTS_LOW, _PORTS_HIGH = 20000, 32000


def _port_slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker.removeprefix("gw") or 0)
    span = (_PORTS_HIGH - _PORTS_LOW) // max(count, 1)
    start = _PORTS_LOW + index * span
    return range(start, start + span)


_PORT_SLICE = _port_slice()
_PORT_WALK = itertools.cycle(_PORT_SLICE)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port nobody holds right now, in this worker's slice, not handed out before (until the
    slice is used up, when the walk starts again at its beginning)."""
    for port in itertools.islice(_PORT_WALK, len(_PORT_SLICE)):
        if _bindable(port):
            return port
    raise RuntimeError(f"no free TCP port in {_PORT_SLICE.start}-{_PORT_SLICE.stop - 1}")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1, made with the openssl command."""

    def __init__(self) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("openssl is not installed")
        self.dir = Path(tempfile.mkdtemp(prefix="mutt-tls-"))
        self.ca, self.cert, self.key = (
            self.dir / n for n in ("ca.pem", "server.pem", "server.key")
        )
        (self.dir / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
        for argv in (
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=mutt-test-ca"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
             "server.csr", "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf"],
        ):  # fmt: skip
            subprocess.run([openssl, *argv], cwd=self.dir, check=True, capture_output=True)

    def server_args(self, port: int) -> list[str]:
        """redis-server options: TLS only on ``port``, replication (and Sentinel's links) too."""
        return [
            "--port", "0", "--tls-port", str(port),
            "--tls-cert-file", str(self.cert), "--tls-key-file", str(self.key),
            "--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "no",
            "--tls-replication", "yes",
        ]  # fmt: skip

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    """A private redis-server on a free port; restartable, optionally with AOF."""

    def __init__(
        self,
        *,
        appendonly: bool = False,
        password: str | None = None,
        extra_args: tuple[str, ...] = (),
        tls: TlsFiles | None = None,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mutt-redis-"))
        self.appendonly = appendonly
        self.password = password
        self.extra_args = list(extra_args)
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--daemonize", "no",
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        args += self.extra_args
        if self.tls:
            args += self.tls.server_args(self.port)
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.client().ping(), 10, f"redis-server on port {self.port}")
        return self

    def client(self, **options: object) -> redis.Redis:
        if self.tls:
            options = {"ssl_ca_certs": str(self.tls.ca), **options}
        return redis.Redis.from_url(self.url, **options)  # type: ignore[arg-type]

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisSentinelCluster:
    """A Redis master (AOF on), ``replicas`` replicas and three Sentinels, all on loopback ports.

    Sentinels see a master down after ``down_after_ms`` and fail over with quorum 2, so a SIGKILL
    of the master (:meth:`kill_master`) promotes a replica within a few seconds
    (:meth:`wait_for_new_master`); the other replicas are then made to follow it.
    ``node_config`` is a redis.conf every node includes (e.g. the deploy kit's redis-mutt.conf).
    :meth:`stop` removes every process and directory.
    """

    MASTER_NAME = "mymaster"

    def __init__(
        self,
        *,
        password: str | None = None,
        sentinel_password: str | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        tls: bool = False,
        replicas: int = 1,
        node_config: str | None = None,
    ) -> None:
        self.tls = TlsFiles() if tls else None
        self.password = password
        self.sentinel_password = sentinel_password
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.replica_count = replicas
        # Full syncs start at once (the default waits 5 s for more replicas to share one).
        self.node_args = ["--repl-diskless-sync-delay", "0"]
        if node_config:
            self.node_args = ["--include", node_config, *self.node_args]
        self.nodes: list[RedisServer] = []
        self.sentinels: list[RedisServer] = []

    def start(self) -> RedisSentinelCluster:
        master = RedisServer(
            appendonly=True, password=self.password, extra_args=tuple(self.node_args), tls=self.tls
        )
        master.start()
        self.nodes = [master]
        try:
            for _ in range(self.replica_count):
                replica = RedisServer(
                    appendonly=True,
                    password=self.password,
                    extra_args=(*self.node_args, "--replicaof", "127.0.0.1", str(master.port)),
                    tls=self.tls,
                ).start()
                self.nodes.append(replica)
            for replica in self.nodes[1:]:
                wait_for(lambda r=replica: self._in_sync(master, r), 15, "the replicas to sync")
            for _ in range(3):
                self.sentinels.append(self._start_sentinel(master.port))
            wait_for(self._sentinels_ready, 20, "three sentinels that see the master and replicas")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_sentinel(self, master_port: int) -> RedisServer:
        sentinel = RedisServer(password=None, tls=self.tls)
        conf = sentinel.dir / "sentinel.conf"
        lines = [
            f"sentinel monitor {self.MASTER_NAME} 127.0.0.1 {master_port} 2",
            f"sentinel down-after-milliseconds {self.MASTER_NAME} {self.down_after_ms}",
            f"sentinel failover-timeout {self.MASTER_NAME} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {self.MASTER_NAME} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {self.MASTER_NAME} {self.password}")
        if self.sentinel_password:
            lines.append(f"requirepass {self.sentinel_password}")
            lines.append(f"sentinel sentinel-pass {self.sentinel_password}")
        conf.write_text("\n".join(lines) + "\n")
        sentinel.password = self.sentinel_password
        args = [
            sentinel.binary, str(conf), "--sentinel",
            "--port", str(sentinel.port), "--bind", "127.0.0.1",
            "--dir", str(sentinel.dir), "--daemonize", "no",
            "--logfile", str(sentinel.dir / "sentinel.log"),
        ]  # fmt: skip
        if self.tls:
            args += self.tls.server_args(sentinel.port)
        sentinel.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(lambda: sentinel.client().ping(), 10, f"sentinel on port {sentinel.port}")
        return sentinel

    @staticmethod
    def _in_sync(master: RedisServer, replica: RedisServer) -> bool:
        info = replica.client().info("replication")
        return info.get("master_link_status") == "up"

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            state = sentinel.client().sentinel_master(self.MASTER_NAME)
            if (
                state["num-slaves"] < self.replica_count
                or state["num-other-sentinels"] < len(self.sentinels) - 1
            ):
                return False
        return True

    @property
    def hosts(self) -> str:
        """REDIS_SENTINEL_HOSTS for this cluster."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def env(self) -> dict[str, str]:
        """The settings that point MUTT at this cluster."""
        env = {"REDIS_SENTINEL_HOSTS": self.hosts, "REDIS_SENTINEL_MASTER": self.MASTER_NAME}
        if self.password:
            env["REDIS_PASSWORD"] = self.password
        if self.sentinel_password:
            env["REDIS_SENTINEL_PASSWORD"] = self.sentinel_password
        if self.tls:
            env.update(
                REDIS_TLS_ENABLED="true",
                REDIS_SENTINEL_TLS_ENABLED="true",
                REDIS_CA_CERT_PATH=str(self.tls.ca),
            )
        return env

    def master_port(self) -> int:
        """The master's port as the first Sentinel that answers names it."""
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                _host, port = sentinel.client().sentinel_get_master_addr_by_name(self.MASTER_NAME)
                return int(port)
        raise RuntimeError("no sentinel answered")

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    @property
    def master(self) -> RedisServer:
        return self.node(self.master_port())

    @property
    def replicas(self) -> list[RedisServer]:
        port = self.master_port()
        return [n for n in self.nodes if n.port != port]

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master, as a crashed host would; returns it (now dead)."""
        master = self.master
        master.kill()
        return master

    def wait_for_new_master(self, old_port: int, timeout: float = 30) -> RedisServer:
        """Wait until every Sentinel names a master other than ``old_port`` that accepts writes."""

        def promoted() -> bool:
            ports = {
                int(s.client().sentinel_get_master_addr_by_name(self.MASTER_NAME)[1])
                for s in self.sentinels
            }
            if len(ports) != 1 or old_port in ports:
                return False
            return self.node(ports.pop()).client().info("replication")["role"] == "master"

        wait_for(promoted, timeout, f"a new master after {old_port}", interval=0.1)
        return self.master

    def start_again(self, node: RedisServer) -> None:
        """Start a killed node again as it was, as its supervisor would, and wait until Sentinel
        has made it a replica of the current master (``+convert-to-slave``) and it has resynced."""
        master = self.master
        node.start()
        try:
            wait_for(lambda: self._in_sync(master, node), 90, "the old master to resync")
        except TimeoutError as exc:
            log = (node.dir / "redis.log").read_text(errors="replace").splitlines()[-15:]
            raise TimeoutError(f"{exc}; its log ends:\n" + "\n".join(log)) from None

    def stop(self) -> None:
        for server in [*self.sentinels, *self.nodes]:
            server.stop()
        self.sentinels, self.nodes = [], []
        if self.tls:
            self.tls.remove()


class ServerProcess:
    """A real server binary run for a test on a free loopback port, in a temporary directory of
    its own that holds its log (``NAME.log``): started with :meth:`launch` by a subclass's
    ``start``, stopped (and its directory removed) by :meth:`stop` or at the end of ``with``."""

    name = "server"

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"mutt-{self.name}-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        raise NotImplementedError

    def launch(self, argv: list[str], *, env: dict[str, str] | None = None) -> None:
        """Run ``argv`` with its output in the log."""
        with (self.dir / f"{self.name}.log").open("wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def check_running(self) -> None:
        """Raise, with the log's tail, when the server has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        path = self.dir / f"{self.name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *_: object) -> None:
        self.stop()
