"""``mutt send``: post sample events, or events from a file, to the ingest endpoint and report.

Without input it sends a built-in set of events that exercise the seed rules. With a file (or ``-``
for stdin) it sends the NDJSON lines or JSON array it holds, in batches, each batch a JSON array body.
A 503 (queue full, Redis down) is retried after its Retry-After; anything rejected or failed makes the
exit status non-zero.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

import click
import orjson

from mutt_app.cli.context import Context

if TYPE_CHECKING:
    import requests

__all__ = [
    "BatchResult",
    "SendReport",
    "parse_events",
    "post_batch",
    "sample_events",
    "send",
    "send_events",
]

INGEST_PATH = "/api/v2/ingest"
MAX_RETRY_WAIT = 30.0
SHOWN_REASONS = 3


def sample_events(now: datetime | None = None) -> list[dict[str, Any]]:
    """Eight events stamped ``now``: what the seed rules page, ticket, log, and leave unhandled."""
    stamp = _iso(now or datetime.now(UTC))

    def event(hostname: str, message: str, **extra: Any) -> dict[str, Any]:
        return {"timestamp": stamp, "hostname": hostname, "message": message, **extra}

    return [
        event("router-01", "CRITICAL: chassis power supply 2 failed", syslog_severity=2),
        event(
            "router-01",
            "%LINK-3-UPDOWN: Interface Gi0/1 changed state to down",
            syslog_severity=3,
        ),
        event("server-01", "disk /var full: 100% used on /dev/sda2", syslog_severity=3),
        event(
            "switch-01",
            "%SYS-6-LOGGINGHOST_STARTSTOP: Logging to host 10.0.0.10 started",
            syslog_severity=6,
        ),
        # An SNMP trap carries an OID and no syslog severity.
        event("router-02", "linkDown: ifIndex 3 ifDescr Gi0/3", trap_oid="1.3.6.1.6.3.1.1.5.3"),
        event("server-02", "cron: job nightly-backup finished in 42 s", syslog_severity=7),
        event(
            "firewall-01",
            "CRITICAL: temperature 92C over threshold on slot 3",
            syslog_severity=1,
        ),
        event(
            "switch-02",
            "%LINEPROTO-5-UPDOWN: Line protocol on Interface Te1/0/48, changed state to up",
            syslog_severity=5,
        ),
    ]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_events(data: bytes) -> list[Any]:
    """The events in ``data``: a JSON array, one JSON object, or NDJSON (one per line).

    Items are not checked here: the ingest endpoint says which it rejects and why. Raises ValueError
    naming the first line that is not JSON.
    """
    try:
        whole = orjson.loads(data)
    except orjson.JSONDecodeError:
        pass  # several values: NDJSON
    else:
        return whole if isinstance(whole, list) else [whole]
    events = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"line {number} is not JSON: {exc}") from None
    return events


@dataclass(frozen=True)
class BatchResult:
    """What the endpoint made of one batch: accepted count, (index, reason) rejections, or failure."""

    accepted: int = 0
    rejected: tuple[tuple[int, str], ...] = ()
    failure: str | None = None


@dataclass
class SendReport:
    """Totals over every batch sent."""

    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    failed_requests: int = 0
    reasons: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every event was accepted."""
        return not self.rejected and not self.failed_requests

    def add(self, result: BatchResult, offset: int, size: int) -> None:
        """Count ``result`` for a batch of ``size`` events starting at event ``offset``."""
        self.sent += size
        self.accepted += result.accepted
        self.rejected += len(result.rejected)
        self.reasons += [f"#{offset + index}: {reason}" for index, reason in result.rejected]
        if result.failure is not None:
            self.failed_requests += 1
            self.failures.append(f"events #{offset}-#{offset + size - 1}: {result.failure}")

    def summary(self) -> str:
        """``sent N, accepted A, rejected R (reasons...), failed requests F``."""
        rejected = f"rejected {self.rejected}"
        if self.reasons:
            shown = "; ".join(self.reasons[:SHOWN_REASONS])
            more = (
                f"; ... {len(self.reasons) - SHOWN_REASONS} more"
                if len(self.reasons) > SHOWN_REASONS
                else ""
            )
            rejected += f" ({shown}{more})"
        return (
            f"sent {self.sent}, accepted {self.accepted}, {rejected}, "
            f"failed requests {self.failed_requests}"
        )


def post_batch(
    session: requests.Session,
    url: str,
    batch: list[Any],
    *,
    api_key: str | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchResult:
    """POST ``batch`` as a JSON array; a 503 is retried up to ``retries`` times after Retry-After."""
    import requests

    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    body = orjson.dumps(batch)
    for attempt in range(retries + 1):
        try:
            response = session.post(url, data=body, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            return BatchResult(failure=f"{type(exc).__name__}: {exc}")
        if response.status_code == 503 and attempt < retries:
            sleep(_retry_after(response, attempt))
            continue
        return _interpret(response, len(batch), attempt)
    raise AssertionError("unreachable: the last attempt always returns")


def _retry_after(response: requests.Response, attempt: int) -> float:
    try:
        wait = float(response.headers.get("Retry-After", ""))
    except ValueError:
        wait = 2.0**attempt  # absent, or an HTTP date: back off on our own
    return min(max(wait, 0.0), MAX_RETRY_WAIT)


def _interpret(response: requests.Response, size: int, retries_done: int) -> BatchResult:
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    status = response.status_code
    if status in (200, 422):
        rejected = tuple(
            (int(item.get("index", -1)), str(item.get("error", "rejected")))
            for item in body.get("rejected", [])
            if isinstance(item, dict)
        )
        if status == 422 and not rejected:
            # Nothing valid, and no per-event reasons (an unparsable body): all rejected.
            reason = str(body.get("error", "rejected"))
            rejected = tuple((index, reason) for index in range(size))
        return BatchResult(accepted=int(body.get("accepted", 0)), rejected=rejected)
    detail = body.get("error") or response.text.strip()[:200] or response.reason
    after = f" (after {retries_done} retries)" if retries_done else ""
    return BatchResult(failure=f"HTTP {status}{after}: {detail}")


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def send_events(
    events: Iterable[Any],
    url: str,
    *,
    api_key: str | None = None,
    batch_size: int = 100,
    rate: float | None = None,
    retries: int = 3,
    timeout: float = 30.0,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> SendReport:
    """Send ``events`` in batches (at about ``rate`` events/s when given); the totals."""
    import requests

    # At a low rate, small batches keep the stream even instead of one burst per batch_size events.
    size = min(batch_size, max(1, int(rate))) if rate else batch_size
    report = SendReport()
    http = session or requests.Session()
    started = clock()
    try:
        for batch in _chunks(events, size):
            if rate:
                wait = started + report.sent / rate - clock()
                if wait > 0:
                    sleep(wait)
            result = post_batch(
                http, url, batch, api_key=api_key, timeout=timeout, retries=retries, sleep=sleep
            )
            report.add(result, report.sent, len(batch))
    finally:
        if session is None:
            http.close()
    return report


@click.command("send")
@click.argument("source", type=click.File("rb"), required=False)
@click.option(
    "--url",
    help=f"Ingest endpoint [default: http://127.0.0.1:SERVER_PORT_INGESTOR{INGEST_PATH}].",
)
@click.option("--api-key", help="X-API-Key [default: INGEST_API_KEY].")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option(
    "--count", type=click.IntRange(1), default=1, show_default=True, help="Send it all N times."
)
@click.option(
    "--rate",
    type=click.FloatRange(0, min_open=True),
    help="About this many events per second [default: as fast as the endpoint answers].",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 100),
    default=3,
    show_default=True,
    help="Retries of a batch answered 503.",
)
@click.option("--timeout", type=click.FloatRange(0.1), default=30.0, show_default=True)
@click.pass_obj
def send(
    obj: Context,
    source: IO[bytes] | None,
    url: str | None,
    api_key: str | None,
    batch_size: int,
    count: int,
    rate: float | None,
    retries: int,
    timeout: float,
) -> None:
    """Post events to the ingest endpoint and report what it accepted.

    SOURCE is a file of NDJSON events or a JSON array ('-' for stdin); without it, a built-in set of
    sample events with current timestamps. Exits 1 if any event was rejected or a request failed.
    """
    settings = obj.settings
    url = url or f"http://127.0.0.1:{settings.server_port_ingestor}{INGEST_PATH}"
    if api_key is None and settings.ingest_api_key is not None:
        api_key = settings.ingest_api_key.get_secret_value()
    if source is None:
        # Fresh timestamps for each round: repeated samples should look like new events.
        events: Iterable[Any] = itertools.chain.from_iterable(sample_events() for _ in range(count))
    else:
        try:
            items = parse_events(source.read())
        except ValueError as exc:
            raise click.ClickException(f"{source.name}: {exc}") from None
        if not items:
            raise click.ClickException(f"{source.name}: no events")
        events = itertools.chain.from_iterable(itertools.repeat(items, count))
    report = send_events(
        events,
        url,
        api_key=api_key,
        batch_size=batch_size,
        rate=rate,
        retries=retries,
        timeout=timeout,
    )
    for failure in report.failures[:SHOWN_REASONS]:
        click.echo(f"request failed: {failure}", err=True)
    if len(report.failures) > SHOWN_REASONS:
        click.echo(f"... and {len(report.failures) - SHOWN_REASONS} more failed requests", err=True)
    click.echo(report.summary())
    if not report.ok:
        raise SystemExit(1)
