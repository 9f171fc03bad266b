"""A small real OTLP/HTTP trace receiver: what a collector's ``otlphttp`` receiver does, kept in memory.

``POST /v1/traces`` with an ``ExportTraceServiceRequest`` (protobuf, gzip or not) is decoded with
opentelemetry-proto, and each span is kept as a :class:`ReceivedSpan` (service, ids as hex, kind,
attributes as Python values, links); the answer is an empty ``ExportTraceServiceResponse``. Anything
else is a 404 or a 400, as a collector would answer.

Run alone (``python -m tests.otlp_receiver [PORT]``, default 4318) it counts the exports and their
bytes and drops them undecoded: a cheap collector to point OTEL_EXPORTER_OTLP_ENDPOINT at while
measuring tracing's cost (BENCHMARKS.md, "Tracing").
"""

from __future__ import annotations

import gzip
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

KINDS = {
    Span.SPAN_KIND_INTERNAL: "internal",
    Span.SPAN_KIND_SERVER: "server",
    Span.SPAN_KIND_CLIENT: "client",
    Span.SPAN_KIND_PRODUCER: "producer",
    Span.SPAN_KIND_CONSUMER: "consumer",
}


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived."""

    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    links: list[tuple[str, str]] = field(default_factory=list)  # (trace_id, span_id)


def value_of(value: AnyValue) -> Any:
    """An OTLP attribute value as Python's (arrays as lists)."""
    which = value.WhichOneof("value")
    if which == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if which is None:
        return None
    return getattr(value, which)


def spans_of(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    """Every span of one export request."""
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: value_of(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        service=str(resource.get("service.name")),
                        name=span.name,
                        kind=KINDS.get(span.kind, "unspecified"),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        attributes={a.key: value_of(a.value) for a in span.attributes},
                        links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                    )
                )
    return spans


class OtlpReceiver:
    """The receiver on 127.0.0.1 (a free port unless given): ``with OtlpReceiver() as otlp:``.
    ``keep`` false: count the exports, decode nothing."""

    def __init__(self, port: int = 0, keep: bool = True) -> None:
        self.keep = keep
        self.exports = 0
        self.bytes = 0
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._server.receiver = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """The base URL for OTEL_EXPORTER_OTLP_ENDPOINT (the exporter adds /v1/traces)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far."""
        with self._lock:
            return list(self._spans)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        """The spans received of one trace."""
        return [s for s in self.spans() if s.trace_id == trace_id]

    def add(self, spans: list[ReceivedSpan]) -> None:
        """Keep the spans of one export."""
        with self._lock:
            self.exports += 1
            self._spans.extend(spans)

    def count(self, size: int) -> None:
        """Count one export of ``size`` bytes, not decoded (``keep`` false)."""
        with self._lock:
            self.exports += 1
            self.bytes += size

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        receiver = self.server.receiver  # type: ignore[attr-defined]
        if not receiver.keep:  # a sink for measuring the senders: take it, spend nothing on it
            receiver.count(len(body))
            self._answer()
            return
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except DecodeError:
            self.send_error(400)
            return
        receiver.add(spans_of(request))
        self._answer()

    def _answer(self) -> None:
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


if __name__ == "__main__":
    with OtlpReceiver(int(sys.argv[1]) if len(sys.argv) > 1 else 4318, keep=False) as otlp:
        print(f"OTLP/HTTP receiver at {otlp.endpoint}; Ctrl-C stops it", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print(f"{otlp.exports} exports, {otlp.bytes} bytes received")
