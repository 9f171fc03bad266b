"""The database of ``mutt run``: the embedded SQLite file migrated and seeded, a configured one checked."""

from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from mutt_app.commands.changes import audited_change
from mutt_app.commands.seed import seed_rules
from mutt_app.config import Settings
from mutt_app.db.engine import alembic_config, current_revision, session_factory, upgrade


class LaunchError(RuntimeError):
    """``mutt run`` cannot start; the message is one line for the user."""


def prepare_database(engine: Engine, settings: Settings) -> str:
    """Get the database ready for the stack; a line saying what was done.

    The embedded SQLite file is migrated and seeded. A configured database is only checked (reachable,
    at the head revision): migrating production is an operator's decision. Raises LaunchError.
    """
    where = engine.url.render_as_string(hide_password=True)
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    if settings.embedded_database:
        upgrade(engine)
        # No worker runs yet, so there is no rules version to bump.
        with audited_change(
            session_factory(engine), None, changed_by="mutt run", reason="seed rules"
        ) as change:
            added = seed_rules(change)
        return f"database {where} at revision {head}; seed rules: {len(added)} added"
    try:
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise LaunchError(f"database {where} is unreachable: {reason}") from None
    if current != head:
        raise LaunchError(
            f"database {where} is at revision {current or 'base'}, not {head}: "
            "run `mutt db upgrade` first"
        )
    return f"database {where} at revision {head}"
