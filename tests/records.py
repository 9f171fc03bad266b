"""What tests read back from what the code under test wrote or says: config audit rows, the rules
version, the rule engine's own refusal message, the migrations' head revision."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.db.engine import ALEMBIC_DIR
from mutt_app.db.models import ConfigAuditLog
from mutt_app.rules.cache import VERSION_KEY
from mutt_app.rules.validate import RuleError, validate_rule_fields

# The revision a fully migrated database is at.
HEAD = ScriptDirectory(str(ALEMBIC_DIR)).get_current_head()


def audit_rows(engine: Engine, **where: Any) -> list[ConfigAuditLog]:
    """The config audit rows, oldest first, where each column named in ``where`` has its value."""
    with Session(engine) as session:
        query = select(ConfigAuditLog).order_by(ConfigAuditLog.id)
        for name, value in where.items():
            query = query.where(getattr(ConfigAuditLog, name) == value)
        return list(session.scalars(query))


def config_audit(sessions: sessionmaker[Session], table: str) -> list[ConfigAuditLog]:
    """The config audit rows of ``table``, oldest first."""
    with sessions() as session:
        query = select(ConfigAuditLog).where(ConfigAuditLog.table_name == table)
        return list(session.scalars(query.order_by(ConfigAuditLog.id)))


def rules_version(redis_client: redis.Redis) -> int:
    """The rules version in Redis (0 before the first change)."""
    raw = redis_client.get(VERSION_KEY)
    return int(raw) if raw else 0


def engine_message(**fields: Any) -> str:
    """The engine's own message for invalid rule fields."""
    merged = {"match_string": None, "trap_oid": None, "syslog_severity": None, "priority": 100}
    merged |= fields
    with pytest.raises(RuleError) as caught:
        validate_rule_fields(
            merged["match_type"],
            merged["match_string"],
            merged["trap_oid"],
            merged["syslog_severity"],
            merged["priority"],
            merged["prod_handling"],
            merged["dev_handling"],
            merged["team_assignment"],
        )
    return str(caught.value)
