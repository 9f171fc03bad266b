"""Alembic environment: migrates the engine MUTT hands over, or the one its settings describe."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from mutt_app.config import load_settings
from mutt_app.db.engine import make_engine
from mutt_app.db.models import Base

config = context.config
if config.config_file_name is not None and "engine" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine") or make_engine(load_settings())
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
run_migrations_online()
