"""The pieces every resource's OpenAPI description is built of, written once.

Schemas (:func:`object_schema`, :func:`fields`, :func:`stored_fields`, :func:`stored_record`,
:func:`listing`,
:func:`single`, :func:`change_answer`, :func:`change_body`), parameters (:func:`param`,
:func:`id_param` and the common ones), request bodies and answers (:func:`body`, :func:`ok`,
:func:`errors`) and the usual shape of a change (:func:`change_operation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mutt_app.commands.fields import FieldSpec
from mutt_app.web.api.params import MAX_DB_INT, MAX_LIMIT

Schema = dict[str, Any]
Operations = dict[tuple[str, str], dict[str, Any]]
"""Operations by (method, path under /api/v2 in OpenAPI's {param} form)."""

REASON = {"type": "string", "minLength": 1, "description": "why (or header X-Change-Reason)"}
TIMESTAMP = {"type": "string", "format": "date-time"}
NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
UUID = {"type": "string", "format": "uuid"}
NULLABLE_UUID = {"type": ["string", "null"], "format": "uuid"}
INT = {"type": "integer"}
NULLABLE_INT = {"type": ["integer", "null"]}
NUMBER = {"type": "number"}
NULLABLE_NUMBER = {"type": ["number", "null"]}
STR = {"type": "string"}
NULLABLE_STR = {"type": ["string", "null"]}
BOOL = {"type": "boolean"}
ANY: Schema = {}
NULL = {"type": "null"}
# Text in a query string or path: the API refuses a NUL (400; PostgreSQL text cannot hold one).
QUERY_TEXT = {"type": "string", "pattern": "^[^\\u0000]*$"}
# An integer query parameter: int_arg refuses what PostgreSQL's integer cannot hold (400).
COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_DB_INT}

CHANGE = {
    "changed": BOOL,
    "correlation_id": UUID,
    "rules_version": NULLABLE_INT,
    "warnings": {"type": "array", "items": STR},
}
"""The summary every change answers with (:meth:`mutt_app.commands.changes.Change.summary`)."""


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def ref_response(name: str) -> dict[str, str]:
    """A reference to the component response ``name``."""
    return {"$ref": f"#/components/responses/{name}"}


def array(items: Schema, description: str = "") -> Schema:
    """An array of ``items``."""
    schema: Schema = {"type": "array", "items": items}
    if description:
        schema["description"] = description
    return schema


def nullable(schema: Schema) -> Schema:
    """``schema`` or null."""
    return {"oneOf": [schema, NULL]}


def object_schema(
    properties: Mapping[str, Any], required: list[str] | None = None, *, closed: bool = True
) -> Schema:
    """An object with ``properties``; ``closed`` (the default) refuses any other property."""
    schema: Schema = {"type": "object", "properties": dict(properties)}
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    return schema


def fields(specs: Mapping[str, FieldSpec]) -> Schema:
    """Request body fields, each with the type and bounds the API checks it against."""
    return {name: spec.json_schema() for name, spec in specs.items()}


def stored_fields(specs: Mapping[str, FieldSpec]) -> Schema:
    """Stored fields: their types only (a row may predate a bound added since)."""
    return {name: {"type": spec.json_schema()["type"]} for name, spec in specs.items()}


def stored_record(specs: Mapping[str, FieldSpec]) -> Schema:
    """A stored record: its id, the stored fields of ``specs``, when created and last updated."""
    return object_schema(
        {"id": INT, **stored_fields(specs), "created_at": TIMESTAMP, "updated_at": TIMESTAMP},
        ["id", *specs, "created_at", "updated_at"],
    )


def change_body(
    specs: Mapping[str, FieldSpec], required: list[str] | None = None, **extra: Any
) -> Schema:
    """The body of a change: the fields of ``specs``, then ``extra`` ones, and the reason."""
    return object_schema({**fields(specs), **extra, "reason": REASON}, required)


def listing(key: str, item: str, **extra: Any) -> Schema:
    """A page of a list: ``key`` holds the ``item`` records, then total, limit, offset, ``extra``."""
    return object_schema(
        {key: array(ref(item)), "total": INT, "limit": INT, "offset": INT, **extra},
        [key, "total", "limit", "offset", *extra],
    )


def single(key: str, item: str) -> Schema:
    """One record: ``{key: item}``."""
    return object_schema({key: ref(item)}, [key])


def change_answer(
    key: str,
    record: Schema,
    *,
    by: tuple[str, Schema] = ("id", INT),
    changed: bool = True,
    **extra: Any,
) -> Schema:
    """A change's answer: what names the record (``by``), the record as ``key``, ``extra`` fields
    and the change summary; ``changed`` is required unless told otherwise.
    """
    name, schema = by
    return object_schema(
        {name: schema, key: record, **extra, **CHANGE},
        [name, key, *extra, *(["changed"] if changed else [])],
    )


def param(name: str, where: str, schema: Schema, description: str) -> Schema:
    """A parameter ``name`` in the query, path or header (a path parameter is required)."""
    parameter = {"name": name, "in": where, "schema": schema, "description": description}
    if where == "path":
        parameter["required"] = True
    return parameter


def id_param(name: str, what: str) -> Schema:
    """A record's integer id in the path."""
    return param(name, "path", {"type": "integer", "minimum": 0}, f"the {what}'s id")


LIMIT = param(
    "limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "page size"
)
OFFSET = param("offset", "query", COUNT, "rows to skip")
PAGE = param("page", "query", COUNT | {"minimum": 1}, "page number, from 1")
DATES = [
    param("start_date", "query", {"type": "string"}, "ISO 8601 date or date-time, inclusive"),
    param("end_date", "query", {"type": "string"}, "ISO 8601 date or date-time, inclusive"),
]
CORRELATION = param("correlation_id", "query", UUID, "only this correlation id")
HOSTNAME = param("hostname", "path", QUERY_TEXT, "the host name, exactly")
CHANGE_HEADERS = [
    param("X-Change-Reason", "header", STR, "the change's reason (or body reason)"),
    param("X-Correlation-ID", "header", UUID, "correlation id for the audit row"),
]


def body(schema: str, *, required: bool = True) -> Schema:
    """A JSON request body of the component schema ``schema``."""
    return {"required": required, "content": {"application/json": {"schema": ref(schema)}}}


def ok(schema: str, status: str = "200", description: str = "OK") -> Schema:
    """A successful answer of the component schema ``schema``."""
    return {
        status: {
            "description": description,
            "content": {"application/json": {"schema": ref(schema)}},
        }
    }


def errors(*statuses: int) -> Schema:
    """The error answers ``statuses``, each a reference to its component response."""
    return {str(status): ref_response(f"E{status}") for status in statuses}


CHANGE_ERRORS = (400, 404, 415, 422)
"""A change of a record: bad header, no such record, not JSON, not an acceptable change."""
CONFLICT_ERRORS = (400, 404, 409, 415, 422)
"""A change of a record that may also conflict (a duplicate, or a state that forbids it)."""
CREATE_ERRORS = (400, 409, 415, 422)
"""A new record: bad header, a duplicate, not JSON, not an acceptable record."""


def read_one(summary: str, path_param: Schema, answer: str) -> dict[str, Any]:
    """Reading one record by ``path_param``: ``answer``, or 404."""
    return {"summary": summary, "parameters": [path_param], "responses": ok(answer) | errors(404)}


def change_operation(
    summary: str,
    answer: str,
    request: str = "Reason",
    *,
    path_param: Schema | None = None,
    created: bool = False,
    statuses: tuple[int, ...] = CHANGE_ERRORS,
) -> dict[str, Any]:
    """An audited change: the change headers (after ``path_param``), a ``request`` body (a bare
    reason, the default, may be left out), ``answer`` as 200 (201 if ``created``) and ``statuses``.
    """
    return {
        "summary": summary,
        "parameters": CHANGE_HEADERS if path_param is None else [path_param, *CHANGE_HEADERS],
        "requestBody": body(request, required=request != "Reason"),
        "responses": (ok(answer, "201", "Created") if created else ok(answer)) | errors(*statuses),
    }


def create_operation(
    summary: str, answer: str, request: str, statuses: tuple[int, ...] = CREATE_ERRORS
) -> dict[str, Any]:
    """An audited change that creates a record: ``answer`` as 201."""
    return change_operation(summary, answer, request, created=True, statuses=statuses)
