"""Fields of a command's input checked against :class:`FieldSpec`: type, nullability and bounds.

A field that is unknown, read-only, missing or of the wrong type or bounds is
:class:`~mutt_app.commands.errors.Invalid` naming it (the REST API answers 422). The same
:class:`FieldSpec` objects describe the fields in the OpenAPI document, so the check and the
description cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mutt_app.commands.errors import Invalid


@dataclass(frozen=True)
class FieldSpec:
    """One accepted body field: its JSON type, whether null is allowed, and its bounds.

    The single source of both the request check (:func:`field_problem`) and the field's schema in
    the OpenAPI description (:meth:`json_schema`), so the two cannot disagree.
    """

    kind: type
    nullable: bool = False
    min_length: int | None = None
    max_length: int | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    enum: tuple[str, ...] = ()
    description: str = ""
    items: FieldSpec | None = None
    """For ``kind`` list: what each item is (``max_length`` then bounds the number of items)."""
    format: str | None = None
    """JSON Schema format of a string (``date-time``), described; the route parses it."""

    def json_schema(self) -> dict[str, Any]:
        """This field as a JSON Schema (OpenAPI 3.1)."""
        kind = _TYPE_NAMES[self.kind]
        schema: dict[str, Any] = {"type": [kind, "null"] if self.nullable else kind}
        if self.items is not None:
            schema["items"] = self.items.json_schema()
        if self.format:
            schema["format"] = self.format
        array = self.kind is list
        for keyword, value in (
            ("minItems" if array else "minLength", self.min_length),
            ("maxItems" if array else "maxLength", self.max_length),
            ("minimum", self.minimum),
            ("maximum", self.maximum),
        ):
            if value is not None:
                schema[keyword] = value
        if self.enum:
            schema["enum"] = [*self.enum, *([None] if self.nullable else [])]
        if self.description:
            schema["description"] = self.description
        return schema


_TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array"}


def json_type(value: Any) -> str:
    """The JSON type name of ``value`` (``integer``, ``string``, ``null``...), as errors name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def field_problem(value: Any, spec: FieldSpec) -> str | None:
    """What is wrong with ``value`` for the field ``spec`` describes, or None if it fits."""
    if value is None:
        return None if spec.nullable else "must not be null"
    # bool is an int in Python, not in JSON; and 100.0 is not an integer for a priority.
    if spec.kind is int:
        fits = type(value) is int
    elif spec.kind is float:
        fits = type(value) in (int, float)
    else:
        fits = isinstance(value, spec.kind)
    if not fits:
        expected = _TYPE_NAMES[spec.kind] + (" or null" if spec.nullable else "")
        return f"expected {expected}, got {json_type(value)}"
    if isinstance(value, list):
        if spec.min_length is not None and len(value) < spec.min_length:
            return f"must have at least {spec.min_length} items"
        if spec.max_length is not None and len(value) > spec.max_length:
            return f"must have at most {spec.max_length} items"
        for index, item in enumerate(value):
            if spec.items is not None and (problem := field_problem(item, spec.items)):
                return f"item {index} {problem}"
        return None
    if isinstance(value, str):
        # PostgreSQL text holds neither NUL nor lone surrogates; caught here they are a 422, not a 500.
        if "\x00" in value:
            return "must not contain NUL characters"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode text (no lone surrogates)"
        if spec.min_length is not None and len(value) < spec.min_length:
            return f"must be at least {spec.min_length} characters"
        if spec.max_length is not None and len(value) > spec.max_length:
            return f"must be at most {spec.max_length} characters"
    if spec.enum and value not in spec.enum:
        return f"must be one of {', '.join(spec.enum)}, got {value!r}"
    too_small = spec.minimum is not None and value < spec.minimum
    too_large = spec.maximum is not None and value > spec.maximum
    if too_small or too_large:
        low = "" if spec.minimum is None else f"at least {spec.minimum}"
        high = "" if spec.maximum is None else f"at most {spec.maximum}"
        return f"must be {' and '.join(filter(None, (low, high)))}, got {value}"
    return None


def check_fields(
    body: Mapping[str, Any],
    specs: Mapping[str, FieldSpec],
    *,
    required: tuple[str, ...] = (),
    read_only: tuple[str, ...] = (),
    meta: tuple[str, ...] = ("reason",),
) -> dict[str, Any]:
    """The body's fields named in ``specs``, type-checked; :class:`Invalid` naming every offending
    field (the API answers it with 422).

    ``meta`` fields (the change reason) are allowed and left out of the result; ``read_only`` and
    unknown fields are refused, so a typo never turns into a silently ignored change.
    """
    unknown = sorted(k for k in body if k not in specs and k not in meta and k not in read_only)
    if unknown:
        raise Invalid(
            f"unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
            {"unknown_fields": unknown, "allowed_fields": sorted([*specs, *meta])},
        )
    fixed = sorted(k for k in body if k in read_only)
    if fixed:
        raise Invalid(
            f"read-only field{'s' if len(fixed) > 1 else ''}: {', '.join(fixed)}",
            {"read_only_fields": fixed},
        )
    missing = [name for name in required if body.get(name) is None]
    if missing:
        raise Invalid(
            f"missing required field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
            {"missing_fields": missing},
        )
    problems = {
        name: problem
        for name, value in body.items()
        if name in specs and (problem := field_problem(value, specs[name])) is not None
    }
    if problems:
        shown = "; ".join(f"{name} {problem}" for name, problem in problems.items())
        raise Invalid(f"invalid field: {shown}", {"fields": problems})
    return {name: value for name, value in body.items() if name in specs}
