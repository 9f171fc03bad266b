"""Reading an ingest body (POST /api/v2/ingest) into its items, before any item is validated.

Bodies are told apart by their bytes rather than their Content-Type, because rsyslog sends newline
batches as text/plain and ``curl -d`` sends JSON as form data:

- one JSON object, or a JSON array of them;
- newline-delimited JSON (rsyslog omhttp ``batch.format="newline"``, syslog-ng ``http()`` batches),
  one object per line, blank lines ignored; a broken line costs only itself;
- Kafka REST records ``{"records": [{"value": {...}}, ...]}`` (rsyslog ``batch.format="kafkarest"``),
  a ``value`` being an object or a JSON string holding one;
- any of these gzip- or deflate-compressed (``Content-Encoding``, or gzip's magic bytes), inflated
  no further than ``max_bytes`` and in time linear in the body, of at most MAX_GZIP_MEMBERS
  concatenated gzip members.

An item holding a repeated key or an integer beyond 64 bits, which orjson would read changed, is a
:class:`ParseFailure` (:mod:`mutt_app.events.exact_json`).

Each item is then validated on its own (:func:`mutt_app.events.schema.validate_items`).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from mutt_app import metrics
from mutt_app.events.exact_json import Loss, loss_in, maybe_lossy, read_exactly

log = logging.getLogger(__name__)

MAX_GZIP_MEMBERS = 1024
"""Concatenated gzip members a body may hold. Senders compress a batch as one member; thousands of
tiny members are only a way to make the server work, so past this the body is refused (413)."""

_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"
_INFLATE_WBITS = 32 + zlib.MAX_WBITS  # accept a gzip or a zlib header
# Compressed input is fed to the inflater in pieces that start small and double: a member's leftover
# input (copied by zlib as unused_data) is then never much larger than the member itself.
_FIRST_FEED_BYTES = 256
_MAX_FEED_BYTES = 256 * 1024
_SUPPORTED_CODINGS = frozenset({"gzip", "x-gzip", "deflate"})
# A Kafka REST v2 produce request; anything else with a "records" key is an event.
_KAFKA_REST_KEYS = frozenset(
    {"records", "key_schema", "value_schema", "key_schema_id", "value_schema_id"}
)


class BodyError(ValueError):
    """The body as a whole cannot be read; ``status`` is the HTTP status to answer with.

    413: larger than allowed (before or after decompression); 415: a Content-Encoding MUTT does not
    speak; 422: not JSON, a JSON array, NDJSON or Kafka REST records.
    """

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class ParseFailure:
    """Stands in :func:`parse_body`'s result for an item that could not be decoded."""

    index: int
    error: str


def parse_body(
    body: bytes, *, content_encoding: str | None, content_type: str | None, max_bytes: int
) -> list[object]:
    """Decode an ingest body into its items, in body order.

    Each item is a decoded JSON value (valid or not as an event: see
    :func:`mutt_app.events.schema.validate_items`), or a
    :class:`ParseFailure` for an NDJSON line or Kafka REST record that could not be decoded.
    ``content_type`` is only quoted in error messages: the format is read from the bytes.

    Raises :class:`BodyError` when the body as a whole is unreadable or too large.
    """
    if len(body) > max_bytes:
        raise BodyError(f"body larger than {max_bytes} bytes", 413)
    codings = _content_codings(content_encoding)
    for _ in codings:
        body = _inflate(body, max_bytes)
    if not codings and body[:2] == _GZIP_MAGIC:
        # JSON never starts with 0x1f: a sender that compressed without saying so.
        body = _inflate(body, max_bytes)
    return _decode(body.removeprefix(_UTF8_BOM).strip(), content_type)


def _content_codings(header: str | None) -> list[str]:
    if not header:
        return []
    codings = []
    for part in header.lower().split(","):
        coding = part.strip()
        if coding in ("", "identity"):
            continue
        if coding not in _SUPPORTED_CODINGS:
            raise BodyError(f"unsupported Content-Encoding {coding!r} (use gzip)", 415)
        codings.append(coding)
    return codings


def _inflate(data: bytes, max_bytes: int) -> bytes:
    """Decompress gzip/zlib ``data`` (several gzip members allowed) without exceeding ``max_bytes``.

    Runs in time linear in ``data``: each member's inflater is fed pieces of ``data`` through a
    memoryview, so what zlib copies aside at a member's end is bounded by that member's size (handing
    it all of ``data`` would copy the whole rest once per member). At most MAX_GZIP_MEMBERS members.
    """
    view = memoryview(data)
    out = bytearray()
    position = 0
    members = 0
    while True:
        members += 1
        if members > MAX_GZIP_MEMBERS:
            raise BodyError(f"body has more than {MAX_GZIP_MEMBERS} gzip members", 413)
        inflater = zlib.decompressobj(_INFLATE_WBITS)
        feed = _FIRST_FEED_BYTES
        while not inflater.eof and position < len(view):
            piece = view[position : position + feed]
            position += len(piece)
            try:
                # Ask for one byte more than allowed: getting it proves the body too large, and a
                # bomb never expands past the cap in memory. (max_length 0 would mean "no limit".)
                out += inflater.decompress(piece, max_bytes + 1 - len(out))
            except zlib.error as exc:
                raise BodyError(f"body is not valid gzip/deflate data: {exc}") from None
            if len(out) > max_bytes:
                raise BodyError(f"decompressed body larger than {max_bytes} bytes", 413)
            # Under the cap, zlib consumed all of the piece or stopped at the member's end.
            feed = min(feed * 2, _MAX_FEED_BYTES)
        if not inflater.eof:
            raise BodyError("gzip body is truncated")
        position -= len(inflater.unused_data)  # input past the member's end: the next member
        if position == len(view):
            return bytes(out)
        # Some writers pad the last member with zeros. (No member starts with a zero byte, so the
        # rest is copied here at most once: it is either all padding or a body error.)
        if view[position] == 0 and not bytes(view[position:]).strip(b"\x00"):
            return bytes(out)


def _decode(text: bytes, content_type: str | None) -> list[object]:
    if not text:
        raise BodyError("body is empty")
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        # More than one line, and not a broken array: read it as NDJSON.
        if b"\n" in text and text[:1] != b"[":
            return _ndjson(text, exc, content_type)
        raise BodyError(_not_json(exc, content_type)) from None
    lossy = maybe_lossy(text, document)
    if isinstance(document, list):
        return _refuse_lossy(text, document, lambda exact: exact) if lossy else document
    if isinstance(document, dict):
        records = document.get("records")
        if isinstance(records, list) and document.keys() <= _KAFKA_REST_KEYS:
            items = _kafka_records(records)
            return _refuse_lossy(text, items, _exact_records) if lossy else items
    return _refuse_lossy(text, [document], lambda exact: [exact]) if lossy else [document]


def _ndjson(text: bytes, whole: orjson.JSONDecodeError, content_type: str | None) -> list[object]:
    items: list[object] = []
    decoded = 0
    for line_number, line in enumerate(text.split(b"\n"), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            item = orjson.loads(line)
            decoded += 1
        except orjson.JSONDecodeError as exc:
            error = f"line {line_number}: not valid JSON ({exc.msg} at column {exc.colno})"
            items.append(ParseFailure(len(items), error))
            continue
        loss = _loss_of(line) if maybe_lossy(line, item) else None
        if loss is None:
            items.append(item)
        else:
            items.append(ParseFailure(len(items), f"line {line_number}: {loss.reason}"))
            _count_losses([loss])
    if not decoded:
        # Not one line is JSON: a broken multi-line document (pretty-printed, say), not NDJSON.
        raise BodyError(_not_json(whole, content_type))
    return items


def _kafka_records(records: list[Any]) -> list[object]:
    items: list[object] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict) or "value" not in record:
            items.append(ParseFailure(index, "Kafka REST record has no 'value'"))
            continue
        value = record["value"]
        if isinstance(value, str):
            text = value
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                error = f"record value is not valid JSON ({exc.msg} at column {exc.colno})"
                items.append(ParseFailure(index, error))
                continue
            encoded = text.encode()  # orjson refuses lone surrogates: the text encodes
            loss = _loss_of(encoded) if maybe_lossy(encoded, value) else None
            if loss is not None:
                items.append(ParseFailure(index, f"record value: {loss.reason}"))
                _count_losses([loss])
                continue
        items.append(value)
    return items


def _loss_of(text: bytes) -> Loss | None:
    """What orjson's reading of ``text`` (one item) lost, if anything."""
    try:
        return loss_in(read_exactly(text))
    except ValueError as exc:
        return Loss("unreadable", f"item cannot be checked for repeated keys: {exc}")


def _exact_records(document: Any) -> list[Any]:
    """The records of a Kafka REST body read exactly: a repeat among its own keys spoils all."""
    if isinstance(document, Loss):
        raise BodyError(f"Kafka REST body: {document.reason}")
    return document["records"]


def _refuse_lossy(text: bytes, items: list[object], exact_items: Any) -> list[object]:
    """``items`` with a :class:`ParseFailure` for each whose exact reading holds a :class:`Loss`.

    ``exact_items`` picks, from ``text`` read exactly, the values in the order of ``items``.
    """
    try:
        document = read_exactly(text)
    except ValueError as exc:
        raise BodyError(f"body cannot be checked for repeated keys: {exc}") from None
    exact = exact_items(document)
    losses = []
    checked = list(items)
    for index, (item, value) in enumerate(zip(items, exact, strict=True)):
        if isinstance(item, ParseFailure):
            continue
        loss = loss_in(value)
        if loss is not None:
            checked[index] = ParseFailure(index, loss.reason)
            losses.append(loss)
    _count_losses(losses)
    return checked


def _count_losses(losses: list[Loss]) -> None:
    for loss in losses:
        metrics.INGEST_INEXACT_ITEMS.labels(loss.kind).inc()
    if losses:
        log.info(
            "refused %d items that a plain JSON reading would change; first: %s",
            len(losses),
            losses[0].reason,
        )


def _not_json(exc: orjson.JSONDecodeError, content_type: str | None) -> str:
    sent_as = f" (sent as {content_type[:100]})" if content_type else ""
    return (
        f"body is not JSON, a JSON array or NDJSON{sent_as}: "
        f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    )
