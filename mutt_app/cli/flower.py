"""Flower, the Celery monitoring UI, started through ``mutt flower``: never with the shipped password.

The deployment kit ships FLOWER_BASIC_AUTH with a placeholder password (deploy/k8s/secret.yaml,
deploy/mutt.env.example) that Flower itself would happily accept. ``mutt flower`` refuses to start
Flower while any of its logins has that placeholder (or no password at all), in one log line, and
otherwise becomes ``celery -A mutt_app flower`` with the given arguments.
"""

from __future__ import annotations

import os
import sys

import click

from mutt_app.cli.context import Context, pass_context

# The passwords the deployment kit ships as placeholders, compared case-insensitively.
PLACEHOLDER_PASSWORDS = frozenset({"change-me"})


def login_problem(basic_auth: str | None) -> str | None:
    """Why Flower must not start with ``basic_auth`` (FLOWER_BASIC_AUTH), or None if it may.

    Unset is allowed: Flower then has no login of its own and is bound to localhost (systemd,
    ``mutt run``) or must sit behind an authenticating proxy.
    """
    if not basic_auth:
        return None
    for login in basic_auth.split(","):
        user, _, password = login.partition(":")
        if not user.strip() or not password:
            return "FLOWER_BASIC_AUTH must be user:password (comma-separated for several logins)"
        if password.strip().lower() in PLACEHOLDER_PASSWORDS:
            return (
                f"FLOWER_BASIC_AUTH still has the shipped placeholder password for {user.strip()!r};"
                " set a real one (deploy/k8s/secret.yaml or /etc/mutt/mutt.env)"
            )
    return None


def flower_argv(args: tuple[str, ...] | list[str]) -> list[str]:
    """The command that runs Flower for MUTT's Celery app with ``args``."""
    return [sys.executable, "-m", "celery", "-A", "mutt_app", "flower", *args]


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    add_help_option=False,
)
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
@pass_context
def flower(obj: Context, flower_args: tuple[str, ...]) -> None:
    """Start Flower (``celery -A mutt_app flower FLOWER_ARGS...``), unless its login is a placeholder."""
    login = obj.settings.flower_basic_auth
    problem = login_problem(login.get_secret_value() if login else None)
    if problem is not None:
        raise click.ClickException(f"Flower not started: {problem}")
    argv = flower_argv(flower_args)
    os.execv(argv[0], argv)
