"""Commands on the dynamic (run-time) configuration: change settings, all or none, audited.

Values are checked by :func:`mutt_app.dynamic_config.parse_value` by the edge (each edge reads its
own input: JSON values, form text); what differs from the current values is stored with one
config_audit_log row (table ``dynamic_config``, the old and new values), and every process picks
the change up within seconds (pub/sub and a 5-second cache).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from mutt_app.db.config_audit import record_change
from mutt_app.dynamic_config import DynamicConfig

AUDIT_TABLE = "dynamic_config"


def differing(config: DynamicConfig, values: Mapping[str, Any]) -> dict[str, Any]:
    """The checked ``values`` that differ from the current ones (asking for what is already set
    is no change: no audit row, as for rules and hosts)."""
    return {name: value for name, value in values.items() if config.get(name) != value}


def set_values(
    config: DynamicConfig,
    session: Session,
    values: Mapping[str, Any],
    *,
    changed_by: str,
    reason: str | None,
) -> dict[str, Any]:
    """Store checked ``values`` with one config_audit_log row in ``session``; returns the old values.

    The audit row is added before Redis is written, so if Redis refuses, the caller's transaction
    rolls the row back with it.
    """
    old = {name: config.get(name) for name in values}
    record_change(
        session,
        changed_by=changed_by,
        operation="UPDATE",
        table_name=AUDIT_TABLE,
        record_id=None,
        old_values=old,
        new_values=dict(values),
        reason=reason,
    )
    session.flush()
    for name, value in values.items():
        config.set(name, value)
    return old
