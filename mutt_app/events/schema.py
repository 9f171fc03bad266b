"""The event schema: validate the items of an ingest body, normalise them into :class:`Event`.

A body is first read into its items (JSON, a JSON array, NDJSON, Kafka REST records, gzip or not):
:func:`mutt_app.events.body.parse_body`. An item it could not decode arrives here as a
:class:`~mutt_app.events.body.ParseFailure` and is rejected with its reason.

Item fields: ``timestamp`` (ISO 8601), ``message``, ``hostname`` (the required set is configurable),
and optionally ``source``, ``syslog_severity`` (alias ``severity``, as in the rebuild guide's
examples), ``trap_oid`` and ``correlation_id``. A field that is missing, null or ``""`` is absent.
The whole item is kept as ``raw``, so fields MUTT does not know survive into the audit.
An item is accepted only once its JSON for the ledger and the classify task is written
(:attr:`Event.wire_json`): one that cannot be (nested deeper than the JSON writer goes) or that holds
a NUL character anywhere (PostgreSQL text cannot store one; rejected, never stripped) is rejected,
and so is a second item of a body with the same ``correlation_id`` (it would be audited only once).

An event's own time is trusted only within an :class:`~mutt_app.events.event_time.EventTimeRange`
of its ``received_at``: outside it, the event is accepted under ``received_at`` and the sender's
time stays in ``raw`` (see that module for why).

SNMP traps relayed by snmptrapd through syslog carry their trap OID as the ``snmpTrapOID.0`` varbind
in the message text; see :func:`trap_oid_from_varbinds` for the snmptrapd format it expects.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from mutt_app.events.body import ParseFailure
from mutt_app.events.correlation_ids import (
    CorrelationIds,
    canonical_uuid,
    correlation_id,
    new_correlation_id,
)
from mutt_app.events.event_time import EventTimeRange

__all__ = [
    "MAX_HOSTNAME_CHARS",
    "MAX_MESSAGE_CHARS",
    "MAX_OID_CHARS",
    "MAX_SOURCE_CHARS",
    "VARBIND_SEPARATOR",
    "VARBIND_SEPARATORS",
    "Event",
    "InvalidEvent",
    "Rejection",
    "new_correlation_id",
    "trap_oid_from_varbinds",
    "validate_item",
    "validate_items",
]

MAX_HOSTNAME_CHARS = 255  # the DNS limit for a full name
MAX_MESSAGE_CHARS = 64 * 1024
MAX_SOURCE_CHARS = 64
MAX_OID_CHARS = 1024  # 128 sub-identifiers (the SNMP maximum) of up to 7 digits, with dots

VARBIND_SEPARATOR = "\x1e"
"""What snmptrapd should put between varbinds (ASCII RS, set with ``%V``).

net-snmp prints an OCTET STRING holding any byte that is neither printable nor whitespace as a
Hex-STRING, so RS can never appear inside a printed value: it cannot be faked by a device's text.
A tab or " | " can.
"""
RSYSLOG_ESCAPED_SEPARATOR = "#036"
"""RS as rsyslog writes it with its default ``parser.escapeControlCharactersOnReceive="on"``."""
VARBIND_SEPARATORS = (VARBIND_SEPARATOR, RSYSLOG_ESCAPED_SEPARATOR)

_SNMP_TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"  # snmpTrapOID.0
_NUL_ESCAPE = b"\\u0000"  # how orjson writes a NUL character inside a JSON string

_OID = re.compile(r"\.?[0-9]+(?:\.[0-9]+)+")
_SEVERITY_NAMES = {
    # RFC 5424 keywords and their usual spellings (rsyslog %syslogseverity-text%, syslog-ng $LEVEL)
    "emerg": 0,
    "emergency": 0,
    "panic": 0,
    "alert": 1,
    "crit": 2,
    "critical": 2,
    "err": 3,
    "error": 3,
    "warning": 4,
    "warn": 4,
    "notice": 5,
    "info": 6,
    "informational": 6,
    "debug": 7,
}
_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
}


class InvalidEvent(ValueError):
    """One item is not a valid event; the message says why, in a few words."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """An item left out of the accepted events: its 0-based position in the body, and why."""

    index: int
    error: str


@dataclass(frozen=True, slots=True)
class Event:
    """One accepted event, normalised. Timestamps are aware UTC datetimes.

    ``wire_json`` is :meth:`to_wire` as JSON bytes, written once by :func:`validate_item` (which
    rejects an item that cannot be written) and reused for the ledger and the classify task; it is
    empty for an event rebuilt by :meth:`from_wire`, and not part of equality.
    """

    correlation_id: str
    timestamp: datetime
    received_at: datetime
    hostname: str
    message: str
    source: str | None
    syslog_severity: int | None
    trap_oid: str | None
    raw: dict[str, Any]
    wire_json: bytes = field(default=b"", compare=False, repr=False)

    def wire_fields(self) -> dict[str, Any]:
        """The fields the wire carries, datetimes still datetimes (orjson writes them as
        :meth:`to_wire` does)."""
        return {
            "correlation_id": self.correlation_id,
            "timestamp": self.timestamp,
            "received_at": self.received_at,
            "hostname": self.hostname,
            "message": self.message,
            "source": self.source,
            "syslog_severity": self.syslog_severity,
            "trap_oid": self.trap_oid,
            "raw": self.raw,
        }

    def to_wire(self) -> dict[str, Any]:
        """This event as JSON-safe values (datetimes as ISO 8601), for task arguments and ledgers."""
        wire = self.wire_fields()
        wire["timestamp"] = self.timestamp.isoformat()
        wire["received_at"] = self.received_at.isoformat()
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Event:
        """The event :meth:`to_wire` produced; ``Event.from_wire(e.to_wire()) == e``.

        Raises ValueError when ``wire`` is not such a dict (a damaged or hand-made dead letter).
        """
        try:
            event = _UnfrozenEvent()
            event.correlation_id = canonical_uuid(wire["correlation_id"])
            event.timestamp = _as_utc(datetime.fromisoformat(wire["timestamp"]))
            event.received_at = _as_utc(datetime.fromisoformat(wire["received_at"]))
            event.hostname = wire["hostname"]
            event.message = wire["message"]
            event.source = wire.get("source")
            event.syslog_severity = wire.get("syslog_severity")
            event.trap_oid = wire.get("trap_oid")
            event.raw = wire.get("raw") or {}
            event.wire_json = b""
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a wire event: {type(exc).__name__}: {exc}") from None
        # Classify rebuilds every event here. The frozen __init__ sets each field through
        # object.__setattr__, dearer than the rest of this method: the fields are set on an
        # unfrozen twin, which becomes the Event (no __post_init__; a unit test compares).
        event.__class__ = cls
        return event


class _UnfrozenEvent:
    """Event's slots, settable; CPython lets ``__class__`` change between classes of one layout."""

    __slots__ = Event.__slots__


# --- items -------------------------------------------------------------------------------------


def validate_items(
    items: Sequence[object],
    *,
    required_fields: Collection[str],
    received_at: datetime,
    event_time: EventTimeRange | None = None,
) -> tuple[list[Event], list[Rejection]]:
    """Validate every item of a body: the valid ones as events, the others as rejections.

    A rejection's index is the item's 0-based position in ``items`` (the body's order). An item
    with the ``correlation_id`` of an earlier accepted item is rejected: the audit keeps one row
    per correlation_id, so accepting both would count an event that is never audited. With
    ``event_time``, an event whose time is outside that range of ``received_at`` is accepted at
    ``received_at`` (counted in ``mutt_ingest_event_time_adjusted_total``, one log line per body).
    """
    events: list[Event] = []
    rejections: list[Rejection] = []
    first_index: dict[str, int] = {}
    adjusted: list[tuple[int, str]] = []
    received_at = _as_utc(received_at)
    new_id = CorrelationIds(len(items)).next if len(items) > 1 else new_correlation_id
    # Every event of the body shares received_at, so the trusted range is worked out once.
    earliest, latest = event_time.bounds(received_at) if event_time else (received_at, received_at)
    for index, item in enumerate(items):
        try:
            event = _validate_item(item, required_fields, received_at, new_id)
        except InvalidEvent as exc:
            rejections.append(Rejection(index, str(exc)))
            continue
        earlier = first_index.setdefault(event.correlation_id, index)
        if earlier != index:
            error = f"duplicate correlation_id {event.correlation_id} (also item {earlier})"
            rejections.append(Rejection(index, error))
            continue
        if event_time is not None and not earliest <= event.timestamp <= latest:
            adjusted.append((index, "past" if event.timestamp < earliest else "future"))
            # The sender's time stays in raw; the wire (and so the audit) carries received_at.
            event = _with_wire_json(dataclasses.replace(event, timestamp=event.received_at))
        events.append(event)
    if adjusted and event_time is not None:
        event_time.count_adjusted(adjusted, items)
    return events, rejections


def validate_item(
    item: object, *, required_fields: Collection[str], received_at: datetime
) -> Event:
    """One item as an :class:`Event`, or :class:`InvalidEvent` saying what is wrong with it.

    When not required, an absent ``timestamp`` becomes ``received_at``, an absent ``hostname``
    "unknown" and an absent ``message`` "". An absent, malformed or nil ``correlation_id`` is
    replaced by a new uuid4 rather than rejected; a valid one is kept in canonical form. Without a
    ``trap_oid``, one is looked for in the message (:func:`trap_oid_from_varbinds`). The event's
    ``wire_json`` is written here; an item that cannot be written, or holds a NUL character in any
    key or value, is invalid.
    """
    return _validate_item(item, required_fields, _as_utc(received_at), new_correlation_id)


def _validate_item(
    item: object,
    required_fields: Collection[str],
    received_at: datetime,
    new_id: Callable[[], str],
) -> Event:
    """:func:`validate_item` for a ``received_at`` already in UTC, making new correlation_ids
    with ``new_id``."""
    if not isinstance(item, dict):
        if isinstance(item, ParseFailure):
            raise InvalidEvent(item.error)
        raise InvalidEvent(f"item is not a JSON object (got {_json_type(item)})")
    for name in required_fields:
        value = item.get(name)
        # _field only for a value that looks absent: it also reads syslog_severity's alias.
        if (value is None or value == "") and _field(item, name) is None:
            raise InvalidEvent(f"missing required field {name!r}")

    # Each check takes the value as it is: absent (missing, null or "") is its own first case.
    hostname = _hostname(item.get("hostname"))
    message = _message(item.get("message"))
    source = _source(item.get("source"))
    severity = _severity(item)
    trap_oid = _trap_oid(item.get("trap_oid"))
    timestamp = _timestamp(item.get("timestamp"), received_at)
    if trap_oid is None and message:
        trap_oid = trap_oid_from_varbinds(message)
        if trap_oid is not None and source is None:
            source = "snmp"
    # Made as Event.from_wire makes one, wire_json left to _with_wire_json: the frozen __init__
    # costs more than the checks of an item (a unit test compares).
    event = _UnfrozenEvent()
    event.correlation_id = correlation_id(item.get("correlation_id"), new_id)
    event.timestamp, event.received_at, event.hostname = timestamp, received_at, hostname
    event.message, event.source, event.syslog_severity = message, source, severity
    event.trap_oid, event.raw = trap_oid, item
    event.__class__ = Event
    return _with_wire_json(event)


def _with_wire_json(event: Event) -> Event:
    """``event``, new and not yet shared, with its ``wire_json`` written (:func:`_wire_json`).

    Set in place, as a frozen dataclass's ``__post_init__`` would: ``dataclasses.replace`` cost
    more than the rest of validating an item.
    """
    object.__setattr__(event, "wire_json", _wire_json(event))
    return event


def _wire_json(event: Event) -> bytes:
    """``event.to_wire()`` as JSON, or :class:`InvalidEvent` when it cannot be stored as such.

    :meth:`Event.wire_fields`, with the datetimes themselves: orjson writes an
    aware UTC datetime exactly as ``isoformat()`` does, in less time than ``isoformat()`` takes.
    """
    wire = event.wire_fields()
    try:
        data = orjson.dumps(wire)
    except orjson.JSONEncodeError as exc:
        # orjson.loads reads deeper documents than orjson.dumps writes (its recursion limit).
        if "recursion" in str(exc).lower():
            raise InvalidEvent("item is nested too deeply to store") from None
        raise InvalidEvent(f"item cannot be stored as JSON: {exc}") from None
    # The escape also appears inside an escaped backslash ("\\u0000"): walk the item to be sure.
    # Most wire JSON holds no escape at all: a backslash (an int: memchr) is looked for first.
    if _NUL_ESCAPE[0] in data and _NUL_ESCAPE in data and _holds_nul(wire):
        raise InvalidEvent("item holds a NUL character (U+0000), which cannot be stored")
    return data


def _holds_nul(value: object) -> bool:
    """Whether a NUL character is in ``value``, a decoded JSON value, or any key or string in it."""
    stack = [value]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _field(item: dict[str, Any], name: str) -> Any:
    """The value of ``name``, or None when absent (missing, null or the empty string)."""
    value = item.get(name)
    if (value is None or value == "") and name == "syslog_severity":
        value = item.get("severity")
    return None if value is None or value == "" else value


def _hostname(value: Any) -> str:
    if value is None or value == "":
        return "unknown"  # only when hostname is not required
    if not isinstance(value, str):
        raise InvalidEvent(f"hostname must be a string, got {_json_type(value)}")
    hostname = value.strip()
    if not hostname:
        raise InvalidEvent("hostname is blank")
    if len(hostname) > MAX_HOSTNAME_CHARS:
        raise InvalidEvent(f"hostname longer than {MAX_HOSTNAME_CHARS} characters")
    return hostname


def _message(value: Any) -> str:
    if value is None or value == "":
        return ""  # only when message is not required
    if not isinstance(value, str):
        raise InvalidEvent(f"message must be a string, got {_json_type(value)}")
    if len(value) > MAX_MESSAGE_CHARS:
        raise InvalidEvent(f"message longer than {MAX_MESSAGE_CHARS} characters")
    return value


def _source(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"source must be a string, got {_json_type(value)}")
    source = value.strip()
    if len(source) > MAX_SOURCE_CHARS:
        raise InvalidEvent(f"source longer than {MAX_SOURCE_CHARS} characters")
    return source or None


def _severity(item: dict[str, Any]) -> int | None:
    value = _field(item, "syslog_severity")
    if value is None:
        return None
    number: int | None = None
    if type(value) is int:  # not bool, which is an int too
        number = value
    elif type(value) is float and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            number = int(text)
        else:
            number = _SEVERITY_NAMES.get(text.lower())
    if number is None or not 0 <= number <= 7:
        name = "syslog_severity" if item.get("syslog_severity") not in (None, "") else "severity"
        raise InvalidEvent(f"{name} must be an integer 0..7, got {_show(value)}")
    return number


def _trap_oid(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"trap_oid must be a string, got {_json_type(value)}")
    oid = value.strip()
    if len(oid) > MAX_OID_CHARS or not _OID.fullmatch(oid):
        raise InvalidEvent(f"trap_oid is not a dotted numeric OID: {_show(value)}")
    # One spelling for rules, audit and Moog: net-snmp's leading dot is dropped.
    return oid.removeprefix(".")


def _timestamp(value: Any, received_at: datetime) -> datetime:
    if value is None or value == "":
        return received_at
    if not isinstance(value, str):
        raise InvalidEvent(f"timestamp must be an ISO 8601 string, got {_json_type(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            # RFC 3339 allows a lower-case 't' and 'z', which Python 3.11 does not.
            parsed = datetime.fromisoformat(value.strip().upper())
        except ValueError:
            raise InvalidEvent(f"timestamp is not ISO 8601: {_show(value)}") from None
    try:
        return _as_utc(parsed)
    except OverflowError:
        raise InvalidEvent(f"timestamp is out of range: {_show(value)}") from None


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is UTC:
        return moment
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)  # a naive time is taken as UTC
    return moment.astimezone(UTC)


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    """``value`` as it would read in JSON, shortened: for error messages."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")
    if value is None or isinstance(value, bool):
        return orjson.dumps(value).decode()
    if isinstance(value, int | float):
        return repr(value)
    return _json_type(value)


# --- snmptrapd ---------------------------------------------------------------------------------


def trap_oid_from_varbinds(
    message: str, separators: str | Sequence[str] = VARBIND_SEPARATORS
) -> str | None:
    """The trap OID in an snmptrapd-formatted message: the value of its ``snmpTrapOID.0`` varbind.

    Expects snmptrapd run with ``-On`` (numeric OIDs) and a format that puts a separator before
    each varbind, e.g. ``format syslog2 %B [%b]: trap%V<RS>%#v`` (RS, ASCII 0x1e, written as the
    raw byte: snmptrapd has no \\x escape). A varbind is recognised only at the start of the
    message or right after a separator, so a string varbind quoting an OID cannot pose as one;
    the first match wins (snmpTrapOID.0 is the second varbind of every v2c/v3 notification).
    Also recognises ``SNMPv2-MIB::snmpTrapOID.0`` as the name and the ``-Oq``/``-OQ`` layouts.

    Returns the OID without its leading dot, or None when the message carries no such varbind.
    """
    if _SNMP_TRAP_OID not in message and "snmpTrapOID.0" not in message:
        return None  # the common case, a syslog line: no regex run
    if isinstance(separators, str):
        separators = (separators,)
    match = _varbind_pattern(tuple(separators)).search(message)
    if match is None or len(match.group(1)) > MAX_OID_CHARS:
        return None
    return match.group(1).removeprefix(".")


@lru_cache(maxsize=8)
def _varbind_pattern(separators: tuple[str, ...]) -> re.Pattern[str]:
    if not separators or not all(separators):
        raise ValueError("varbind separators must be non-empty strings")
    starts = "|".join(re.escape(s) for s in separators)
    name = r"(?:\.?1\.3\.6\.1\.6\.3\.1\.1\.4\.1\.0|(?:SNMPv2-MIB::)?snmpTrapOID\.0)"
    # "name = OID: value" by default; "name = value" with -OQ; "name value" with -Oq.
    between = r"(?:[ \t]*=[ \t]*(?:OID:[ \t]*)?|[ \t]+)"
    return re.compile(rf"(?:^|{starts})[ \t]*{name}{between}(\.?[0-9]+(?:\.[0-9]+)+)(?![0-9.])")


_varbind_pattern(VARBIND_SEPARATORS)  # compile the default pattern at import, off the hot path
