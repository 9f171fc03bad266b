"""The app's database sessions and Redis client, as an API view reaches them (its Runtime's)."""

from __future__ import annotations

import redis
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.web.context import runtime


def sessions() -> sessionmaker[Session]:
    """The app's session factory (its Runtime's)."""
    return runtime().sessions


def redis_connection() -> redis.Redis:
    """The app's Redis client (its Runtime's, shared with /health)."""
    return runtime().redis
