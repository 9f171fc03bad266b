"""Task bodies of MUTT's events content type, decoded through kombu's registry as Celery calls it.

A worker decodes a message's body in its consumer and again in its pool, from the same body
object (mutt_app.celery_app.BodyDecoder); the second decode is answered from memory, any other
decode reads the bytes.
"""

from __future__ import annotations

import orjson
import pytest
from kombu.exceptions import DecodeError
from kombu.serialization import loads

import mutt_app.celery_app  # noqa: F401  (registers the events serializer)
from mutt_app.celery_app import BodyDecoder
from mutt_app.names import EVENTS_CONTENT_TYPE


def _body(message: str) -> str:
    # As the Redis transport hands it over with body_encoding None: the envelope's string.
    return orjson.dumps([[[{"message": message}]], {}, {"callbacks": None}]).decode()


def _decode(body: str) -> object:
    return loads(body, EVENTS_CONTENT_TYPE, "utf-8", accept=[EVENTS_CONTENT_TYPE])


def test_the_pools_decode_of_the_body_the_consumer_just_decoded_is_answered_from_memory() -> None:
    body = _body("link down")
    consumer_side = _decode(body)
    pool_side = _decode(body)
    assert pool_side is consumer_side
    assert pool_side == [[[{"message": "link down"}]], {}, {"callbacks": None}]


def test_an_equal_body_in_another_object_is_decoded_from_its_bytes() -> None:
    body = _body("link down")
    first = _decode(body)
    again = _decode(body.encode().decode())  # equal text, another object: another message
    assert again == first
    assert again is not first


def test_the_next_message_replaces_the_kept_body() -> None:
    first_body, second_body = _body("one"), _body("two")
    first = _decode(first_body)
    second = _decode(second_body)
    assert _decode(second_body) is second
    assert _decode(first_body) is not first


def test_a_body_is_kept_for_one_repeat_only() -> None:
    decoder = BodyDecoder()
    body = _body("link down").encode()
    first = decoder(body)
    assert decoder(body) is first
    assert decoder(body) is not first  # released after its second decode: nothing is held on


def test_a_body_that_is_not_json_still_fails_as_kombu_reports_it() -> None:
    with pytest.raises(DecodeError):
        _decode("[[{not json")
