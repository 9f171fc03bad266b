"""MUTT, the Multi-Use Telemetry Tool."""

from typing import Any

from mutt_app.config import VERSION

__version__ = VERSION


def __getattr__(name: str) -> Any:
    # `celery -A mutt_app` looks for `mutt_app.app`; build it only then, not on every import.
    if name in ("app", "celery"):
        from mutt_app.runtime import worker_app

        return worker_app()
    raise AttributeError(f"module 'mutt_app' has no attribute {name!r}")
