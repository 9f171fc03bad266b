"""The ingest endpoint's answers: the bytes jsonify would write, written by orjson."""

from __future__ import annotations

import pytest
from flask import Flask, jsonify

from mutt_app.web.ingest.endpoint import _answer


@pytest.mark.parametrize(
    "body",
    [
        {
            "status": "accepted",
            "accepted": 2,
            "correlation_ids": [
                "5364951c-6bc9-4d0d-a6ee-b164809ca292",
                "3eb6e116-ac83-4afc-9c47-0dafae54b8b8",
            ],
            "rejected": [{"index": 1, "error": 'hostname must be a string, got "x"'}],
        },
        {"status": "accepted", "accepted": 1, "correlation_ids": ["a"], "rejected": []},
        # Not ASCII: jsonify escapes it, so the answer is jsonify's own.
        {
            "status": "accepted",
            "accepted": 0,
            "rejected": [{"index": 0, "error": "caf\u00e9 \u2603"}],
        },
    ],
    ids=["ascii", "one", "not-ascii"],
)
def test_an_accepted_answer_is_what_jsonify_would_write(body: dict) -> None:
    app = Flask(__name__)
    with app.app_context():
        expected = jsonify(body)
        answer = _answer(200, body, "")
    assert answer.status_code == 200
    assert answer.get_data() == expected.get_data()
    assert answer.headers["Content-Type"] == expected.headers["Content-Type"]
    assert answer.headers["Content-Length"] == expected.headers["Content-Length"]
