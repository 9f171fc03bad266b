"""``mutt run``: the whole MUTT stack in the foreground, one child process per part.

The parts (a private Redis, the local Moog sink, ingest, web, worker, beat, Flower) are planned from
the settings by :func:`mutt_app.devtools.parts.plan_parts`; the database is made ready by
:mod:`mutt_app.devtools.database`, the private Redis by :mod:`mutt_app.devtools.embedded_redis`, and
:class:`mutt_app.devtools.supervisor.Supervisor` runs the parts until Ctrl-C.
"""

from __future__ import annotations

import shutil

import click
from sqlalchemy.exc import SQLAlchemyError

from mutt_app.cli.context import Context
from mutt_app.commands.users import list_users
from mutt_app.devtools.database import LaunchError, prepare_database
from mutt_app.devtools.directions import directions
from mutt_app.devtools.embedded_redis import (
    HA_REPLICAS,
    HA_SENTINELS,
    REDIS_PORTS,
    SENTINEL_PORTS,
    find_redis_server,
    pick_port,
    write_sentinel_configs,
)
from mutt_app.devtools.parts import (
    DB_PARTS,
    METRICS_GROUPS,
    PART_NAMES,
    metrics_dir,
    plan_parts,
    split_names,
)
from mutt_app.devtools.supervisor import Supervisor


@click.command("run")
@click.option(
    "--only",
    metavar="PARTS",
    help=f"Run only these parts (comma-separated; {', '.join(PART_NAMES)}).",
)
@click.option("--without", metavar="PARTS", help="Run all parts but these (comma-separated).")
@click.option(
    "--start-timeout",
    type=click.FloatRange(1, 600),
    default=90.0,
    show_default=True,
    help="Seconds for every part to accept connections.",
)
@click.option(
    "--ha",
    is_flag=True,
    help="Run the private Redis as a primary, two replicas and three Sentinels, to try failover.",
)
@click.pass_obj
def run(
    obj: Context, only: str | None, without: str | None, start_timeout: float, ha: bool = False
) -> None:
    """Run the whole stack in the foreground (Ctrl-C stops everything).

    A private Redis (unless REDIS_URL/REDIS_HOST/REDIS_SENTINEL_HOSTS is set), the local Moog sink (unless
    MOOG_WEBHOOK_URL is set), ingest, web, a classify worker (two solo-pool processes), a forward worker,
    beat and Flower.
    Parts that die are restarted. With --ha the private Redis is a primary, two replicas and
    three Sentinels on loopback ports, and every part reaches it through the Sentinels.
    Once all listen it prints where each is, and how to make the web UI's first admin.
    """
    settings = obj.settings
    if ha and not settings.embedded_redis:
        raise click.UsageError(
            "--ha starts its own Redis with Sentinels: unset REDIS_URL, REDIS_HOST and "
            "REDIS_SENTINEL_HOSTS"
        )
    primary = pick_port()
    redis_url = f"redis://127.0.0.1:{primary}/0" if settings.embedded_redis else None
    ha_ports: list[int] = []
    if ha:
        # Distinct ports: nothing listens on them yet, so pick_port would hand one out twice.
        for _ in HA_REPLICAS:
            ha_ports.append(pick_port([p for p in REDIS_PORTS if p not in (primary, *ha_ports)]))
        for _ in HA_SENTINELS:
            ha_ports.append(pick_port([p for p in SENTINEL_PORTS if p not in ha_ports]))
    binary = find_redis_server()
    try:
        parts = plan_parts(
            settings,
            split_names(only),
            split_names(without),
            redis_url,
            f"http://127.0.0.1:{settings.moog_sink_port}/webhook",
            redis_binary=binary or "redis-server",
            ha_ports=ha_ports,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    names = {part.name for part in parts}
    if "redis" in names and binary is None:
        raise click.ClickException(
            "redis-server not found: install it (apt-get install redis-server), "
            "or set REDIS_URL to a running Redis"
        )
    (settings.mutt_data_dir / "redis").mkdir(parents=True, exist_ok=True)
    if names & set(HA_REPLICAS):
        for replica in HA_REPLICAS:
            (settings.mutt_data_dir / replica).mkdir(parents=True, exist_ok=True)
        write_sentinel_configs(settings.mutt_data_dir, primary)
    # Samples of processes from an earlier run would be merged in: start from an empty directory.
    samples = metrics_dir(settings.mutt_data_dir.resolve())
    shutil.rmtree(samples, ignore_errors=True)
    for group in METRICS_GROUPS:
        (samples / group).mkdir(parents=True)
    accounts: int | None = None
    if names & DB_PARTS:
        try:
            click.echo(f"[mutt] {prepare_database(obj.engine, settings)}")
            accounts = _accounts(obj)
        except LaunchError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            # The stack runs for hours: the launcher holds no connection of its own meanwhile.
            obj.close()
    notes = directions(settings, parts, accounts)
    status = Supervisor(parts, start_timeout=start_timeout, notes=notes).run()
    if status:
        raise SystemExit(status)


def _accounts(obj: Context) -> int | None:
    """How many web UI accounts exist (None if the database cannot say: the directions then say
    nothing of accounts)."""
    try:
        with obj.sessions() as session:
            return len(list_users(session))
    except SQLAlchemyError:
        return None
