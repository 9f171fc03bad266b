"""kombu's Redis envelope around one classify task: its body base64-encoded (kombu's default) or not.

    .venv/bin/python bench/envelope_bench.py [--events 200] [--repeat 400]

Builds a classify task body of EVENTS ingest-shaped events (as MUTT's serializer writes it), then
times, in process CPU, what kombu's Redis transport does to every message: on publish, the body
encoded for the envelope and the envelope written as JSON (kombu.utils.json); on delivery, the
envelope read and the body decoded. Prints µs per message and per event for each encoding.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable

import orjson
from kombu.transport.virtual.base import Base64
from kombu.utils import json as kombu_json


def task_body(events: int) -> bytes:
    """A classify task's body ([args, kwargs, embed]) with ``events`` syslog-like events."""
    wire = [
        {
            "correlation_id": str(uuid.uuid4()),
            "timestamp": "2026-12-06T14:00:00+00:00",
            "received_at": "2026-12-06T14:00:00.123456+00:00",
            "hostname": f"core-sw-{n % 40:02d}.example.net",
            "message": f"%LINK-3-UPDOWN: Interface GigabitEthernet0/{n % 48}, changed state to down",
            "source": "syslog",
            "syslog_severity": 3,
            "trap_oid": None,
            "raw": {"hostname": f"core-sw-{n % 40:02d}.example.net", "facility": "local7"},
        }
        for n in range(events)
    ]
    return orjson.dumps([[wire, uuid.uuid4().hex, 0], {}, {}])


def envelope(body: bytes | str, encoding: str | None) -> dict:
    return {
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/x-mutt-events+json",
        "headers": {"lang": "py", "task": "mutt.classify_event", "id": str(uuid.uuid4())},
        "properties": {"body_encoding": encoding, "delivery_tag": str(uuid.uuid4())},
    }


def cpu_per_call(call: Callable[[], object], repeat: int) -> float:
    started = time.process_time()
    for _ in range(repeat):
        call()
    return (time.process_time() - started) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=400)
    args = parser.parse_args()
    body = task_body(args.events)
    codec = Base64()

    def publish(encoding: str | None) -> bytes:
        encoded = codec.encode(body) if encoding else body
        return kombu_json.dumps(envelope(encoded, encoding)).encode()

    def deliver(raw: bytes) -> bytes:
        message = kombu_json.loads(raw)
        data = message["body"]
        return codec.decode(data) if message["properties"]["body_encoding"] else data

    for encoding in ("base64", None):
        raw = publish(encoding)
        assert deliver(raw) in (body, body.decode())
        out = cpu_per_call(lambda e=encoding: publish(e), args.repeat)
        back = cpu_per_call(lambda r=raw: deliver(r), args.repeat)
        print(
            f"{encoding or 'none':>7}: {len(raw):,} bytes; publish {out * 1e6:,.0f} µs"
            f" ({out * 1e6 / args.events:.2f}/event), deliver {back * 1e6:,.0f} µs"
            f" ({back * 1e6 / args.events:.2f}/event)"
        )


if __name__ == "__main__":
    main()
