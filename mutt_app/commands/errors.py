"""Why a command refused: the domain's errors, which each edge translates into its own answer.

The REST API answers :class:`NotFound` with 404, :class:`Invalid` with 422 and :class:`Conflict` with
409, each with the error's ``message`` and ``details``; the admin UI flashes the message; the CLI
prints it. A command raises one of them before it changes anything, or inside its audited change,
which is then rolled back.
"""

from __future__ import annotations

from typing import Any


class CommandError(Exception):
    """A command that cannot be done: a one-line ``message`` and optional structured ``details``."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(CommandError):
    """The record the command names does not exist."""


class Invalid(CommandError):
    """The values given do not make a valid record (``details`` names the fields, if it can)."""


class Conflict(CommandError):
    """The record's state forbids the command (a draft published already, no open window)."""
