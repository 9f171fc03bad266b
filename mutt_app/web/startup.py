"""How a web process refuses to start: one line on stderr, then exit status 4.

Gunicorn's master takes a worker's exit status 4 as "the app cannot load" and stops, with its own
exit status 4. Any other status makes it boot the worker again, forever, printing the same line
each time, while systemd and Kubernetes see a running service. So a setting that cannot work
(a bad value, an ingest endpoint without its key, a backtest cap that leaves no thread free) stops
the whole server at once, under gunicorn or not.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from mutt_app.config import Settings

APP_LOAD_ERROR = 4
"""Gunicorn's ``Arbiter.APP_LOAD_ERROR``: a worker exiting with it halts the master."""


def refuse_to_start(reason: str) -> NoReturn:
    """Print ``mutt: <reason>`` (one line) to stderr and exit with status 4."""
    print(f"mutt: {reason}", file=sys.stderr, flush=True)
    raise SystemExit(APP_LOAD_ERROR)


def check_ingest_key(settings: Settings) -> None:
    """Refuse to start an ingest endpoint without INGEST_API_KEY, unless INGEST_ALLOW_OPEN says
    it is meant to be open."""
    if settings.ingest_api_key is None and not settings.ingest_allow_open:
        refuse_to_start(
            "INGEST_API_KEY is not set: the ingest endpoint would accept posts from anyone;"
            " set it, or set INGEST_ALLOW_OPEN=true if the endpoint is meant to be open"
        )
