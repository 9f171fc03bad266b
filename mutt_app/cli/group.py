"""The ``mutt`` group: the settings, read once (and overlaid from Vault), then a subcommand."""

from __future__ import annotations

import click

from mutt_app import __version__
from mutt_app.cli.config import config_group
from mutt_app.cli.context import Context
from mutt_app.cli.db import db
from mutt_app.cli.dlq import dlq
from mutt_app.cli.flower import flower
from mutt_app.cli.heartbeats import heartbeats
from mutt_app.cli.hosts_teams import dev_hosts, teams
from mutt_app.cli.retention import retention
from mutt_app.cli.rules import rules
from mutt_app.cli.users import users
from mutt_app.cli.windows import windows
from mutt_app.config import SettingsError, load_settings
from mutt_app.logs import configure_logging
from mutt_app.vault import VaultError, overlay_secrets

PRODUCTION_COMMANDS = (
    config_group,
    db,
    dev_hosts,
    dlq,
    flower,
    heartbeats,
    retention,
    rules,
    teams,
    users,
    windows,
)


@click.group(commands=PRODUCTION_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mutt")
@click.pass_context
def main(ctx: click.Context) -> None:
    """MUTT, the Multi-Use Telemetry Tool."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if settings.vault_addr:
        try:
            settings = overlay_secrets(settings)
        except VaultError as exc:
            raise click.ClickException(f"vault: {exc}") from None
    configure_logging(settings, service="mutt-cli")
    ctx.obj = Context(settings)
    ctx.call_on_close(ctx.obj.close)


def with_commands(*commands: click.Command) -> click.Group:
    """A ``mutt`` group like :func:`main`, with ``commands`` besides its own.

    The developer tools (``mutt run``, ``moog-sink``, ``send``) sit above the CLI in the layers: they
    add themselves to a copy, so the production group never imports them.
    """
    return click.Group(
        main.name,
        commands=[*main.commands.values(), *commands],
        callback=main.callback,
        params=list(main.params),
        help=main.help,
        context_settings=dict(main.context_settings),
    )
