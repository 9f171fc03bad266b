"""What ``mutt run`` prints once its stack listens: where to send events, where the web UI is and
how to get into it, where the metrics, Flower and the Moog stand-in are.

The web UI has no default account (``mutt users``), so on a first run its log-in page would leave
a newcomer stuck: the directions say which command makes the first admin. ``mutt run`` does not
make one itself: a password printed to a terminal (and to whatever records it) is not one to keep.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from mutt_app.config import Settings
from mutt_app.devtools.supervisor import Part

# The parts whose processes serve the workers' merged /metrics page (METRICS_PORT_WORKER).
_WORKER_PARTS = ("worker", "forwarder")


def directions(settings: Settings, parts: Sequence[Part], accounts: int | None) -> list[str]:
    """The lines ``mutt run`` prints under its table of parts.

    ``accounts`` is how many web UI accounts exist (None: not known, the database was not read).
    Lines name only the parts in ``parts``.
    """
    by_name = {part.name: part for part in parts}
    lines = []
    ingest = by_name.get("ingest")
    if ingest is not None and ingest.url:
        # `mutt send` posts plain HTTP to SERVER_PORT_INGESTOR: no hint when ingest speaks TLS.
        hint = "" if settings.ingest_tls else "  (or `mutt send` for sample events)"
        lines.append(f"Send events:    POST {ingest.url}{hint}")
    web = by_name.get("web")
    if web is not None and web.url:
        lines.append(f"Web UI:         {web.url}")
        if accounts == 0:
            lines.append(
                "                no account yet: make the first admin in another terminal, with "
                "the same settings:"
            )
            lines.append(
                "                  mutt users create admin --role admin --reason 'first admin'"
            )
        elif accounts is not None:
            lines.append(
                f"                {accounts} account(s): `mutt users list`; "
                "`mutt users create NAME --role admin --reason WHY` adds one"
            )
    # Ingest and web serve their own /metrics, on the address the table shows for them.
    metrics = [
        f"{name} {urlunsplit((*urlsplit(url)[:2], '/metrics', '', ''))}"
        for name, url in (
            (name, by_name[name].url) for name in ("ingest", "web") if name in by_name
        )
        if url
    ]
    if settings.metrics_port_worker and any(name in by_name for name in _WORKER_PARTS):
        metrics.append(f"workers http://127.0.0.1:{settings.metrics_port_worker}/metrics")
    if metrics:
        lines.append(f"Metrics:        {', '.join(metrics)}")
    flower = by_name.get("flower")
    if flower is not None and flower.url:
        login = " (log-in: FLOWER_BASIC_AUTH)" if settings.flower_basic_auth else ""
        lines.append(f"Flower:         {flower.url}{login}")
    sink = by_name.get("moog-sink")
    if sink is not None and sink.url:
        lines.append(f"Moog stand-in:  {sink.url}  (the alerts MUTT forwarded)")
    return lines
