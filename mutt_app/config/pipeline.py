"""Settings for the path an event takes: ingest, the Celery broker, classification and what holds
alerts back (deduplication, storm budgets, flapping, heartbeats)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

from pydantic import BaseModel, Field, field_validator, model_validator

from mutt_app.config.types import CommaList, Port, Positive


class PipelineSettings(BaseModel):
    """Ingest, the broker, classification and the hold-back stages."""

    # --- ingest ----------------------------------------------------------------------------
    server_port_ingestor: Port = 8080
    max_ingest_queue_size: Positive = 1_000_000
    max_ingest_body_bytes: Positive = 10 * 1024 * 1024
    ingest_trusted_proxies: Annotated[int, Field(ge=0, le=10)] = 0
    """As WEBUI_TRUSTED_PROXIES, for ingest (its key throttle); 1 behind the shipped nginx alone."""
    ingest_allow_open: bool = False
    """Whether the ingest endpoint may run without INGEST_API_KEY, accepting posts from anyone.
    False: ingest refuses to start without a key (an open endpoint by accident is worse than one
    that does not start); ``mutt run``'s local stack sets it true. Open, /health says so."""
    required_message_fields: CommaList = ("timestamp", "message", "hostname")
    # How far before (a replayed syslog buffer) and after (clock skew) its received_at an event's own
    # timestamp may be; outside, it is audited under received_at with the sender's time in raw.
    event_time_max_age_days: Annotated[int, Field(ge=1, le=366)] = 7
    event_time_max_ahead_minutes: Annotated[int, Field(ge=0, le=1440)] = 15
    classify_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    """Most events per classify task. A task's fixed cost (broker, task events, ledger, a commit)
    is shared by its events: 500 let 100-event requests pair up (BENCHMARKS.md)."""
    classify_time_budget_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    """Seconds one classify task may spend deciding events (also the rule tester's limit). When
    it is spent, the events not yet decided go on in a new task (see mutt_app.tasks.classify), so
    no rule set holds a worker much longer than this; well under the broker visibility timeout."""
    ingest_linger_ms: Annotated[float, Field(ge=0, le=1000)] = 20.0
    """How long an ingest process holds a not-yet-full batch for more requests' events (0: never)."""
    ingest_min_replicas: Annotated[int, Field(ge=0, le=16)] | None = None
    """Replicas that must acknowledge a round's writes (Redis WAIT) before its requests get their
    2xx; fewer: 503 with Retry-After. Default 1 with REDIS_SENTINEL_HOSTS, else 0 (no WAIT)."""
    ingest_replica_timeout_ms: Annotated[int, Field(ge=1, le=10_000)] = 1000
    """How long a round waits for those acknowledgements."""

    # --- ingest over TLS (gunicorn's own: deploy/gunicorn/ingest.conf.py and `mutt run`) --------
    ingest_tls_cert_path: Path | None = None
    """Ingest's certificate (PEM, any intermediates after it). Set with INGEST_TLS_KEY_PATH,
    gunicorn serves ingest over HTTPS; behind the deploy kit's nginx, TLS ends at nginx instead."""
    ingest_tls_key_path: Path | None = None
    """The private key of INGEST_TLS_CERT_PATH (PEM, unencrypted: gunicorn asks no passphrase)."""
    ingest_tls_client_ca_path: Path | None = None
    """Set, every sender must present a client certificate signed by this CA (PEM); the TLS
    handshake of one without is refused."""

    # --- Celery broker ---------------------------------------------------------------------
    broker_visibility_timeout: Annotated[int, Field(ge=5)] = 10
    """Seconds a worker may go without renewing its hold on a message before the message is taken
    for a dead worker's and handed out again (mutt_app.redelivery: live workers renew theirs)."""
    broker_restore_interval: Annotated[int, Field(ge=1)] = 2
    """Seconds between each worker's scans for messages whose hold was not renewed."""
    ledger_reconcile_after: Annotated[int, Field(ge=10)] = 600
    """Seconds before an accepted batch with no audit is published again (what the broker lost)."""

    metrics_port_worker: Annotated[int, Field(ge=0, le=65535)] = 8081
    """Port of a worker host's /metrics (0: none). Needs PROMETHEUS_MULTIPROC_DIR under prefork."""
    health_port_alerter: Annotated[int, Field(ge=0, le=65535)] = 8082
    """Port of a classify worker's liveness (/health) and readiness (/ready) probes (0: none)."""
    health_port_moog: Annotated[int, Field(ge=0, le=65535)] = 8084
    """Port of a forward worker's probes (0: none)."""
    health_port_remediation: Annotated[int, Field(ge=0, le=65535)] = 8087
    """Port of beat's probes (beat schedules remediation; 0: none)."""

    # --- classification --------------------------------------------------------------------
    alerter_max_retries: Positive = 3
    alerter_queue_warn_threshold: Annotated[int, Field(ge=1, le=2**31 - 1)] = 1000
    """Ticket lane (mutt.forward) length, in forward tasks, at which classify warns. The default of
    the dynamic key of the same name, which overrides it at run time."""
    alerter_queue_shed_threshold: Annotated[int, Field(ge=1, le=2**31 - 1)] = 2000
    """Ticket lane length at which classify sheds Ticket_only alerts (never pages); likewise the
    default of its dynamic key."""
    cache_reload_interval: Positive = 300
    unhandled_prefix: str = "mutt:unhandled"
    unhandled_threshold: Positive = 100
    unhandled_expiry_seconds: Positive = 86_400
    unhandled_max_hosts: Positive = 20_000
    """Hosts counted per UNHANDLED_EXPIRY_SECONDS window; further new hosts wait for the next."""
    unhandled_default_team: str = "NETO"
    dedup_window_seconds: Annotated[int, Field(ge=0, le=86_400)] = 60
    """Seconds during which repeats of a forwarded alert (same host, rule and message template)
    are counted instead of forwarded; 0 turns deduplication off. A rule's own window wins; the
    dynamic key of the same name overrides this at run time."""
    dedup_flush_interval_seconds: Annotated[int, Field(ge=1, le=3600)] = 5
    """How often beat sends what closed windows held: dedup repeat counts, storm-budget summaries,
    flapping ends."""
    storm_budget_per_device: Annotated[int, Field(ge=0, le=1_000_000)] = 100
    """Alerts of one device (host) and lane that may reach Moog per storm window; 0: no budget."""
    storm_budget_per_rule: Annotated[int, Field(ge=0, le=1_000_000)] = 500
    """Alerts of one rule and lane that may reach Moog per storm window; 0: no budget."""
    storm_window_seconds: Annotated[int, Field(ge=1, le=86_400)] = 60
    """The storm budgets' window; the held alerts of each get one summary when it closes."""
    flap_transitions: Annotated[int, Field(ge=0, le=1000)] = 5
    """Problem/clear transitions of one host and pair that make it flap; 0: no flap detection."""
    flap_window_seconds: Annotated[int, Field(ge=1, le=86_400)] = 600
    """The window those transitions must fall within."""
    flap_quiet_seconds: Annotated[int, Field(ge=1, le=86_400)] = 600
    """How long a flapping pair must stay quiet before its episode ends."""
    heartbeat_check_interval_seconds: Annotated[int, Field(ge=1, le=3600)] = 60
    """How often beat checks the heartbeats (hosts that must send an event every N minutes). A
    quiet host is alerted at most this long after its N minutes are up; the shortest heartbeat is
    one minute, so once a minute by default."""
    # The heartbeat check drops from the last-seen set the hosts silent for longer than the longest
    # heartbeat interval plus the margin, then the longest silent past the cap.
    heartbeat_last_seen_margin_seconds: Annotated[int, Field(ge=0, le=30 * 86_400)] = 3600
    heartbeat_last_seen_max_hosts: Annotated[int, Field(ge=1)] = 200_000
    heartbeat_max_quiet_hosts: Annotated[int, Field(ge=1, le=100_000)] = 1000
    """Open quiet alerts one heartbeat may have; past it the other quiet hosts are counted
    (``mutt_heartbeat_quiet_over_cap``), each alerted once an open one clears."""

    @field_validator(
        "ingest_tls_cert_path", "ingest_tls_key_path", "ingest_tls_client_ca_path", mode="before"
    )
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        # A commented-out line in mutt.env.example left as `INGEST_TLS_CERT_PATH=` means "no TLS".
        return None if value == "" else value

    @model_validator(mode="after")
    def _tls_pair(self) -> Self:
        if (self.ingest_tls_cert_path is None) != (self.ingest_tls_key_path is None):
            raise ValueError(
                "INGEST_TLS_CERT_PATH and INGEST_TLS_KEY_PATH go together: set both, or neither"
            )
        if self.ingest_tls_client_ca_path is not None and self.ingest_tls_cert_path is None:
            raise ValueError(
                "INGEST_TLS_CLIENT_CA_PATH asks senders for certificates over TLS: "
                "set INGEST_TLS_CERT_PATH and INGEST_TLS_KEY_PATH too"
            )
        return self

    @property
    def ingest_tls(self) -> bool:
        """True when gunicorn serves ingest over HTTPS (INGEST_TLS_CERT_PATH and _KEY_PATH)."""
        return self.ingest_tls_cert_path is not None

    @field_validator("required_message_fields", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value
