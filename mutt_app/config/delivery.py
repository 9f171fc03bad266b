"""Settings for delivery to Moogsoft: the endpoint, batches, the shared rate limit, retries and the
circuit breaker."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from mutt_app.config.types import Positive, PositiveFloat


class DeliverySettings(BaseModel):
    """How alerts reach Moogsoft."""

    # --- Moogsoft --------------------------------------------------------------------------
    moog_webhook_url: str | None = None
    moog_webhook_timeout: PositiveFloat = 10.0
    moog_format: Literal["rest_lam", "cloud"] = "rest_lam"
    """The request body: the REST LAM's ``{"events": [...]}`` batch, or the Moogsoft Cloud Events
    API's JSON array (``dedupe_key``, severity names, ``apiKey`` header); see :mod:`mutt_app.forwarding.moog`."""
    moog_batch_size: Annotated[int, Field(ge=1, le=1000)] = 50
    """Most alerts one forward task carries and one request to Moog holds (dynamic key too)."""
    moog_max_alert_bytes: Annotated[int, Field(ge=1024)] = 512 * 1024
    """The largest alert (compact JSON) forwarded; a larger one goes to the poison store with the
    reason (:mod:`mutt_app.forwarding.admission`). The default is above the largest alert an
    accepted event makes: a 64 Ki-character message, JSON-escaped, is at most 384 KiB."""
    moog_delivery_history_seconds: Positive = 7 * 86_400
    """How long each alert's delivery attempts are kept (Redis list per alert, see
    :mod:`mutt_app.forwarding.history`)."""
    moog_rate_limit: Positive = 50
    moog_rate_period: PositiveFloat = 1.0
    moog_rate_limit_key: str = "mutt:rate_limit:moog"
    moog_page_reserved_share: Annotated[float, Field(ge=0, le=0.9)] = 0.2
    """Share of each rate-limit window only pages (Page_and_ticket) may use; tickets get the rest."""
    # Celery's per-worker ceiling on forward attempts per second (0: ten times the cluster rate).
    moog_worker_rate_limit: Annotated[float, Field(ge=0)] = 0.0
    moog_max_retries: Annotated[int, Field(ge=0)] = 5
    moog_retry_base_delay: PositiveFloat = 1.0
    moog_retry_max_delay: PositiveFloat = 60.0
    moog_circuit_breaker_threshold: Positive = 5
    moog_circuit_breaker_timeout: Positive = 60
    moog_health_check_enabled: bool = True
    moog_health_timeout: PositiveFloat = 5.0

    @property
    def worker_rate_limit(self) -> str:
        """Celery ``rate_limit`` for forward_to_moog in each worker, e.g. ``"500/s"``.

        Every attempt counts against it, deferred ones too, and when it binds Celery holds prefetched
        messages: set to the cluster rate it starved workers to about one task a second in our tests
        (celery/celery#5927). So it is a ceiling well above the limit that Moog sees, which the shared
        limiter in Redis enforces.
        """
        per_second = (
            self.moog_worker_rate_limit or 10 * self.moog_rate_limit / self.moog_rate_period
        )
        return f"{per_second:g}/s"
