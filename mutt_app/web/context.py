"""The web apps' one :class:`Runtime`, as a view reaches it (inside an app or request context)."""

from __future__ import annotations

from flask import Flask, current_app

from mutt_app.config import Settings
from mutt_app.runtime import REQUEST, Runtime

EXTENSION = "mutt"


def install(app: Flask, settings: Settings) -> Runtime:
    """Give ``app`` its Runtime (Redis with the request profile); connections open on first use."""
    runtime = app.extensions[EXTENSION] = Runtime(settings, REQUEST)
    return runtime


def runtime() -> Runtime:
    """The current app's Runtime."""
    return current_app.extensions[EXTENSION]


def settings() -> Settings:
    """The current app's settings."""
    return runtime().settings
