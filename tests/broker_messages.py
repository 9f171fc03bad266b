"""Celery task messages as they wait in Redis (kombu's Redis transport), read the way kombu reads them.

A message is kombu's JSON envelope (headers, properties, body); the body is Celery's protocol 2,
``[args, kwargs, embed]``, written by the task's serializer and carried as the transport's
``body_encoding`` says (base64, or as it is: MUTT sets none, mutt_app.celery_app).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import redis
from kombu.utils import json as kombu_json


def envelope(raw: bytes) -> dict[str, Any]:
    """kombu's envelope of one message, as a list entry or (in ``unacked``) ``[envelope, ...]``."""
    message = kombu_json.loads(raw)
    return message[0] if isinstance(message, list) else message


def body(message: dict[str, Any]) -> bytes:
    """The body of ``message`` (an :func:`envelope`) as the task's serializer wrote it."""
    data = message["body"]
    if message["properties"].get("body_encoding") == "base64":
        return base64.b64decode(data)
    return data.encode() if isinstance(data, str) else data


def task_args(raw: bytes) -> list[Any]:
    """The positional arguments of the task message ``raw``."""
    return orjson.loads(body(envelope(raw)))[0]


def queued_args(client: redis.Redis, queue: str) -> list[list[Any]]:
    """The arguments of every task waiting in ``queue``, oldest first (kombu LPUSHes)."""
    return [task_args(raw) for raw in reversed(client.lrange(queue, 0, -1))]
