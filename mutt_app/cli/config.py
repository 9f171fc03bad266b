"""``mutt config``: read and change the dynamic settings at runtime."""

from __future__ import annotations

import click

from mutt_app.cli.audited import change_reason, cli_user
from mutt_app.cli.context import Context, pass_context
from mutt_app.commands.dynamic_config import set_values
from mutt_app.dynamic_config import parse_value


@click.group("config")
def config_group() -> None:
    """Read and change operational settings at runtime (Redis-backed, no restart)."""


@config_group.command("list")
@pass_context
def config_list(obj: Context) -> None:
    """Every dynamic setting, its value, and whether it is overridden."""
    for name, entry in obj.dynamic_config.get_all().items():
        mark = "*" if entry["overridden"] else " "
        click.echo(f"{mark} {name:<32} {entry['value']!s:<10} {entry['help']}")
    click.echo("(* = set at runtime; others are the defaults from the environment)")


@config_group.command("get")
@click.argument("name")
@pass_context
def config_get(obj: Context, name: str) -> None:
    """Print one setting's current value."""
    try:
        click.echo(obj.dynamic_config.get(name))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@config_group.command("set")
@click.argument("name")
@click.argument("value")
@change_reason
@pass_context
def config_set(obj: Context, name: str, value: str, reason: str) -> None:
    """Change a setting for every process within seconds (audited, with a reason)."""
    if not reason.strip():
        raise click.ClickException("--reason must not be blank")
    try:
        new = parse_value(name, value)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    with obj.sessions.begin() as session:
        old = set_values(
            obj.dynamic_config, session, {name: new}, changed_by=cli_user(), reason=reason.strip()
        )[name]
    click.echo(f"{name}: {old} -> {new}")
