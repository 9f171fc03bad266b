"""SQLAlchemy models of MUTT's tables.

The constraints live in the database (CHECK, UNIQUE, NOT NULL) so that every writer, not only the admin
forms, is held to them. The Alembic migrations under ``alembic/versions`` are the source of truth for the
schema; these models mirror them for queries and for the admin UI. ``event_audit_log`` is RANGE-partitioned
by month on PostgreSQL, which the migrations (not ``create_all``) build.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mutt_app.names import HELD_REASONS, ROLES

MATCH_TYPES = ("contains", "regex", "oid_prefix")
PROD_HANDLINGS = ("Page_and_ticket", "Ticket_only", "Email_only", "Log_only")
DEV_HANDLINGS = ("Ticket_only", "Email_only", "Log_only", "Suppress")
CONFIG_OPERATIONS = ("CREATE", "UPDATE", "DELETE")
DECISION_REASONS = ("unmatched", "dev_handling", "email_only", "log_only")
"""Why an event was never meant for Moog: its decision's handling does not forward.

``unmatched``: no rule matched (logged only); ``dev_handling``: a development host's event whose
rule's dev_handling does not forward (Email_only, Log_only, Suppress); ``email_only`` and
``log_only``: the rule's prod_handling. Ticket_only and Page_and_ticket forward, so they have no
reason (a shed Ticket_only alert is ``shed``).
"""
NOT_FORWARDED_REASONS = HELD_REASONS + DECISION_REASONS
"""Every value of ``event_audit_log.held_reason``: for rows audited since migration 0010 it is NULL
exactly when ``forwarded_to_moog`` is true (older rows carry only the HELD_REASONS)."""
MAX_DEDUP_WINDOW_SECONDS = 86_400
MAX_DEDUP_KEY_CHARS = 200
"""Longest ``alert_rules.dedup_key``, in characters (a handful of parts: mutt_app.rules.dedup_key)."""

JsonDocument = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class AlertRule(Base):
    """A classification rule: what to match, how to handle it in prod and dev, which team."""

    __tablename__ = "alert_rules"
    __table_args__ = (
        CheckConstraint(_in("match_type", MATCH_TYPES), name="match_type"),
        CheckConstraint(_in("prod_handling", PROD_HANDLINGS), name="prod_handling"),
        CheckConstraint(_in("dev_handling", DEV_HANDLINGS), name="dev_handling"),
        CheckConstraint("priority BETWEEN 1 AND 1000", name="priority_range"),
        CheckConstraint(
            "syslog_severity IS NULL OR syslog_severity BETWEEN 0 AND 7", name="severity_range"
        ),
        CheckConstraint(
            "match_string IS NOT NULL OR trap_oid IS NOT NULL OR syslog_severity IS NOT NULL",
            name="has_criterion",
        ),
        CheckConstraint("match_type <> 'oid_prefix' OR trap_oid IS NOT NULL", name="oid_needs_oid"),
        # contains/regex need a match_string, except a severity-only rule (no string, no OID).
        CheckConstraint(
            "match_type = 'oid_prefix' OR match_string IS NOT NULL"
            " OR (trap_oid IS NULL AND syslog_severity IS NOT NULL)",
            name="text_needs_string",
        ),
        CheckConstraint("match_string IS NULL OR match_string <> ''", name="match_string_nonempty"),
        CheckConstraint("trap_oid IS NULL OR trap_oid <> ''", name="trap_oid_nonempty"),
        CheckConstraint("team_assignment <> ''", name="team_nonempty"),
        CheckConstraint(
            "dedup_window_seconds IS NULL"
            f" OR dedup_window_seconds BETWEEN 0 AND {MAX_DEDUP_WINDOW_SECONDS}",
            name="dedup_window_range",
        ),
        CheckConstraint(
            f"dedup_key IS NULL OR length(dedup_key) BETWEEN 1 AND {MAX_DEDUP_KEY_CHARS}",
            name="dedup_key_length",
        ),
        CheckConstraint("clears_rule_id IS NULL OR clears_rule_id <> id", name="clears_other"),
        Index(
            "idx_alert_rules_active",
            "is_active",
            postgresql_where=text("is_active"),
            sqlite_where=text("is_active"),
        ),
        Index("idx_alert_rules_priority", text("priority DESC")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    match_string: Mapped[str | None] = mapped_column(Text)
    trap_oid: Mapped[str | None] = mapped_column(Text)
    syslog_severity: Mapped[int | None] = mapped_column(SmallInteger)
    match_type: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, server_default=text("100"))
    prod_handling: Mapped[str] = mapped_column(Text)
    dev_handling: Mapped[str] = mapped_column(Text)
    team_assignment: Mapped[str] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # Seconds repeats of one alert are counted instead of forwarded; NULL: DEDUP_WINDOW_SECONDS.
    dedup_window_seconds: Mapped[int | None] = mapped_column(Integer)
    # Which parts of an alert make one incident (mutt_app.rules.dedup_key); NULL: the default key.
    dedup_key: Mapped[str | None] = mapped_column(Text)
    # The rule whose alerts this one's clear (LINK-UP clears LINK-DOWN): the pair flapping watches.
    clears_rule_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("alert_rules.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Kept current by a database trigger, so raw SQL updates are covered too.
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    def as_dict(self) -> dict[str, Any]:
        """The rule's columns as JSON-friendly values (for the API and the config audit)."""
        return {c.name: _jsonable(getattr(self, c.key)) for c in self.__table__.columns}


class DevelopmentHost(Base):
    """A host whose events get the rules' dev_handling instead of prod_handling."""

    __tablename__ = "development_hosts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hostname: Mapped[str] = mapped_column(Text, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    def as_dict(self) -> dict[str, Any]:
        return {c.name: _jsonable(getattr(self, c.key)) for c in self.__table__.columns}


class DeviceTeam(Base):
    """A host-to-team mapping that overrides the matching rule's team."""

    __tablename__ = "device_teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hostname: Mapped[str] = mapped_column(Text, unique=True)
    team_assignment: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    def as_dict(self) -> dict[str, Any]:
        return {c.name: _jsonable(getattr(self, c.key)) for c in self.__table__.columns}


class EventAuditLog(Base):
    """One row per classified event. Monthly partitions on PostgreSQL (see the migrations)."""

    __tablename__ = "event_audit_log"
    __table_args__ = (
        # Idempotent inserts: a redelivered task's rows conflict here and are skipped. Its index
        # also serves lookups by correlation_id (the spec's idx_event_audit_correlation, dropped
        # in migration 0004).
        UniqueConstraint("correlation_id", "event_timestamp", name="uq_event_audit_correlation"),
        Index("idx_event_audit_hostname", "hostname"),
        Index("idx_event_audit_timestamp", text("event_timestamp DESC")),
        Index("idx_event_audit_rule", "matched_rule_id"),
        # The unhandled templates and top unhandled hosts read only unmatched events, newest first.
        Index(
            "idx_event_audit_unmatched",
            text("event_timestamp DESC"),
            postgresql_where=text("matched_rule_id IS NULL"),
            sqlite_where=text("matched_rule_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    audited_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    hostname: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)
    syslog_severity: Mapped[int | None] = mapped_column(SmallInteger)
    trap_oid: Mapped[str | None] = mapped_column(Text)
    # No foreign key: rules are soft-deleted, and a FK check per audit row would slow the hot path.
    matched_rule_id: Mapped[int | None] = mapped_column(Integer)
    handling_decision: Mapped[str] = mapped_column(Text)
    team_assignment: Mapped[str | None] = mapped_column(Text)
    is_dev: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    forwarded_to_moog: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    correlation_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    raw: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument)
    # Why the event was not forwarded (one of NOT_FORWARDED_REASONS); NULL when it was. The name
    # predates the decision reasons (it held only HELD_REASONS before migration 0010). For a
    # duplicate, duplicate_of is the forwarded alert's correlation_id.
    held_reason: Mapped[str | None] = mapped_column(Text)
    duplicate_of: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # The rules version (mutt:rules:version) the event was classified under; NULL before 0010.
    rules_version: Mapped[int | None] = mapped_column(BigInteger)
    trace_id: Mapped[str | None] = mapped_column(Text)
    """The classify task's trace (32 hex digits) when tracing was on (OTEL_ENABLED)."""


class ConfigAuditLog(Base):
    """Who changed which configuration, from what to what, and why. Never deleted."""

    __tablename__ = "config_audit_log"
    __table_args__ = (
        CheckConstraint(_in("operation", CONFIG_OPERATIONS), name="operation"),
        Index("idx_config_audit_timestamp", text("changed_at DESC")),
        Index("idx_config_audit_table", "table_name"),
        Index("idx_config_audit_operation", "operation"),
        Index("idx_config_audit_user", "changed_by"),
        Index("idx_config_audit_record", "table_name", "record_id"),
        Index("idx_config_audit_correlation", "correlation_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    changed_by: Mapped[str] = mapped_column(Text)
    operation: Mapped[str] = mapped_column(Text)
    table_name: Mapped[str] = mapped_column(Text)
    record_id: Mapped[int | None] = mapped_column(Integer)
    old_values: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument)
    new_values: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument)
    reason: Mapped[str | None] = mapped_column(Text)
    correlation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class User(Base):
    """A person who logs in to the web UI, with one role. Only the password's hash is stored."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="role"),
        CheckConstraint("username <> ''", name="username_nonempty"),
        CheckConstraint("password_hash <> ''", name="password_hash_nonempty"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(Text, unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Written into every web session and checked on every request; bumped to end them all.
    session_generation: Mapped[int] = mapped_column(Integer, server_default=text("0"))

    def audit_dict(self) -> dict[str, Any]:
        """The account as the config audit records it: never the password hash."""
        return {
            "id": self.id,
            "username": self.username,
            "role": self.role,
            "is_active": self.is_active,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        # RFC 3339 with an offset: SQLite returns naive datetimes, and every stored time is UTC.
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


class _FailedWork:
    """Columns shared by dead letters and poison: the task, its arguments, and how it failed."""

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    task_name: Mapped[str] = mapped_column(Text)
    queue: Mapped[str] = mapped_column(Text)
    payload: Mapped[Any | None] = mapped_column(JsonDocument)
    raw_payload: Mapped[str | None] = mapped_column(Text)
    """The undecodable original, when ``payload`` could not be parsed."""
    correlation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    error_type: Mapped[str] = mapped_column(Text)
    error_message: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    replays: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    first_failed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    last_failed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    def as_dict(self) -> dict[str, Any]:
        """The item's columns as JSON-friendly values (for the config audit of a replay or purge)."""
        return {c.name: _jsonable(getattr(self, c.key)) for c in self.__table__.columns}  # type: ignore[attr-defined]


class DeadLetter(_FailedWork, Base):
    """Work that failed for good; remediation replays it with backoff."""

    __tablename__ = "dead_letters"

    next_replay_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PoisonLetter(_FailedWork, Base):
    """Work remediation gave up on (or could not decode); kept for people to inspect."""

    __tablename__ = "poison_letters"

    poisoned_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    reason: Mapped[str] = mapped_column(Text)


MAX_HEARTBEAT_MINUTES = 10_080  # a week
HEARTBEAT_GLOB_CHARS = "*?["
"""A heartbeat's ``host`` containing one of these is a glob (fnmatch, case-insensitive)."""


class Heartbeat(Base):
    """ "Host X (or every host a glob matches, or every host of a device team) must send at least
    one event every ``interval_minutes``": a quiet host raises one alert to Moog, and one clear
    when it talks again (:mod:`mutt_app.watch.heartbeats`)."""

    __tablename__ = "heartbeats"
    __table_args__ = (
        CheckConstraint("(host IS NULL) <> (team IS NULL)", name="host_or_team"),
        CheckConstraint("host IS NULL OR host <> ''", name="host_nonempty"),
        CheckConstraint("team IS NULL OR team <> ''", name="team_nonempty"),
        CheckConstraint("name <> ''", name="name_nonempty"),
        CheckConstraint(
            f"interval_minutes BETWEEN 1 AND {MAX_HEARTBEAT_MINUTES}", name="interval_range"
        ),
        CheckConstraint(_in("handling", PROD_HANDLINGS), name="handling"),
        CheckConstraint(
            "team_assignment IS NULL OR team_assignment <> ''", name="team_assignment_nonempty"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    # A host name, or a glob (db-*) over the hosts MUTT has heard from; or a device team.
    host: Mapped[str | None] = mapped_column(Text)
    team: Mapped[str | None] = mapped_column(Text)
    interval_minutes: Mapped[int] = mapped_column(Integer)
    # The alert's lane: Page_and_ticket pages, anything else is a ticket.
    handling: Mapped[str] = mapped_column(Text, server_default=text("'Ticket_only'"))
    # The Moog class of its alerts; NULL: the host's device team, else UNHANDLED_DEFAULT_TEAM.
    team_assignment: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # A watched host that never sent anything is quiet from here: the heartbeat's last change.
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    def as_dict(self) -> dict[str, Any]:
        """The heartbeat's columns as JSON-friendly values (for the API and the config audit)."""
        return {c.name: _jsonable(getattr(self, c.key)) for c in self.__table__.columns}


class RuleDraft(Base):
    """Proposed rule changes (:mod:`mutt_app.rules.drafts`), kept apart from the live rules until
    published; a published draft stays, read-only, as the record of what was published."""

    __tablename__ = "rule_drafts"
    __table_args__ = (
        CheckConstraint("name <> ''", name="name_nonempty"),
        CheckConstraint("(published_at IS NULL) = (published_by IS NULL)", name="published"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    document: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    """``{"create": [...], "update": [...], "deactivate": [...]}``: :meth:`Draft.document`."""
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    published_by: Mapped[str | None] = mapped_column(Text)
    base: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument)
    """``{"<rule id>": {field: value}}``: the rules it updates or deactivates as they were when it
    was drafted (or re-based); publishing over a rule changed since is a conflict. NULL: a draft
    from before migration 0013, which records none."""

    def as_dict(self) -> dict[str, Any]:
        """The draft's columns as JSON-friendly values (for the config audit)."""
        return {c.name: _jsonable(getattr(self, c.key)) for c in self.__table__.columns}


WINDOW_ACTIONS = ("suppress", "downgrade")
"""What a maintenance window does to the forwardable alerts it scopes: ``suppress`` (audited with
``held_reason='maintenance'``, not forwarded) or ``downgrade`` (Page_and_ticket becomes Ticket_only)."""


class MaintenanceWindow(Base):
    """A maintenance window: when (one-off, or an RFC 5545 RRULE with a duration in a time zone),
    what (hosts or globs, device teams, rule ids, trap-OID prefixes) and how (``action``).

    :mod:`mutt_app.holdback.windows` validates and interprets it; the database holds the shape:
    a one-off window has ``ends_at``, a recurring one ``rrule`` and ``duration_minutes``.
    """

    __tablename__ = "maintenance_windows"
    __table_args__ = (
        CheckConstraint(_in("action", WINDOW_ACTIONS), name="action"),
        CheckConstraint("name <> ''", name="name_nonempty"),
        CheckConstraint(
            "(rrule IS NULL AND ends_at IS NOT NULL)"
            " OR (rrule IS NOT NULL AND duration_minutes IS NOT NULL)",
            name="one_off_or_recurring",
        ),
        CheckConstraint(
            "duration_minutes IS NULL OR duration_minutes > 0", name="duration_positive"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rrule: Mapped[str | None] = mapped_column(Text)
    duration_minutes: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(Text, server_default=text("'UTC'"))
    hosts: Mapped[list[str]] = mapped_column(JsonDocument, default=list)
    teams: Mapped[list[str]] = mapped_column(JsonDocument, default=list)
    rule_ids: Mapped[list[int]] = mapped_column(JsonDocument, default=list)
    oid_prefixes: Mapped[list[str]] = mapped_column(JsonDocument, default=list)
    action: Mapped[str] = mapped_column(Text)
    summary_alert: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # Set by "end now": the occurrence running at that moment ends then (later ones still run).
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    def as_dict(self) -> dict[str, Any]:
        """The window's columns as JSON-friendly values (for the API and the config audit)."""
        return {c.name: _jsonable(getattr(self, c.key)) for c in self.__table__.columns}
