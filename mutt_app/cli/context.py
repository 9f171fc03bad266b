"""What every ``mutt`` subcommand shares: the settings, read once, and the CLI's :class:`Runtime`."""

from __future__ import annotations

import click
import redis
from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.config import Settings
from mutt_app.dynamic_config import DynamicConfig
from mutt_app.runtime import CLI, Runtime


class Context:
    """The settings and, opened on first use, the resources of one ``mutt`` invocation.

    Every resource comes from one :class:`Runtime` with the CLI's Redis profile (a person at a
    terminal wants an answer or an error now); :meth:`close` closes what it opened.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = Runtime(settings, CLI)

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.runtime.sessions

    @property
    def celery(self) -> Celery:
        return self.runtime.celery

    @property
    def dynamic_config(self) -> DynamicConfig:
        return self.runtime.dynamic_config

    @property
    def workers_redis(self) -> redis.Redis | None:
        """The Redis whose rules version tells workers of a change; None on the embedded default,
        whose Redis ``mutt run`` starts on a port of its own (its workers reload every
        CACHE_RELOAD_INTERVAL).
        """
        if self.settings.embedded_redis:
            return None
        return self.runtime.redis

    def where(self) -> str:
        """The database's URL without its password, as the ``db`` commands show it."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        """Close the connections this invocation opened."""
        self.runtime.close()


pass_context = click.make_pass_decorator(Context)
