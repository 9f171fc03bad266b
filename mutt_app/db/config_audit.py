"""The configuration audit trail: every change to rules, hosts, teams and settings, who and why."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from mutt_app.db.models import CONFIG_OPERATIONS, ConfigAuditLog


def record_change(
    session: Session,
    *,
    changed_by: str,
    operation: str,
    table_name: str,
    record_id: int | None,
    old_values: dict[str, Any] | None,
    new_values: dict[str, Any] | None,
    reason: str | None = None,
    correlation_id: uuid.UUID | str | None = None,
) -> ConfigAuditLog:
    """Add one config_audit_log row to ``session``'s transaction (so it commits with the change)."""
    if operation not in CONFIG_OPERATIONS:
        raise ValueError(
            f"operation must be one of {', '.join(CONFIG_OPERATIONS)}, got {operation!r}"
        )
    if isinstance(correlation_id, str):
        correlation_id = uuid.UUID(correlation_id)
    row = ConfigAuditLog(
        changed_by=changed_by,
        operation=operation,
        table_name=table_name,
        record_id=record_id,
        old_values=old_values,
        new_values=new_values,
        reason=reason,
        correlation_id=correlation_id or uuid.uuid4(),
    )
    session.add(row)
    return row
