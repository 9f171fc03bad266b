"""Rows for an answer: how many a listing holds, and a row's columns as a JSON object."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session


def count(session: Session, query: Select[Any]) -> int:
    """How many rows ``query`` (without its ordering and paging) returns."""
    return session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0


def row_dict(row: Any) -> dict[str, Any]:
    """A mapped row's columns (datetimes and UUIDs are left for orjson; see :func:`json_response`)."""
    return {c.name: getattr(row, c.key) for c in row.__table__.columns}
