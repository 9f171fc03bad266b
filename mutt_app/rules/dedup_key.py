"""A rule's dedup key: which parts of an alert make one incident, so repeats of it are counted.

A rule's ``dedup_key`` is a short comma-separated list of parts; NULL is the default key,
``host, severity, template`` (:func:`mutt_app.events.fingerprint.fingerprint`). Two alerts of the
rule are repeats of one incident when every part has the same value for both:

===================  ============================================================================
part                 value
===================  ============================================================================
``host``             the host name, lower-cased
``severity``         the event's syslog severity (an escalation is a new incident)
``template``         the incident template: volatile parts masked, addresses and numbered
                     identities kept (:func:`~mutt_app.events.fingerprint.incident_template`)
``masked``           the grouping template: addresses and every number masked too
                     (:func:`~mutt_app.events.fingerprint.template`), so "peer 10.0.0.1 down"
                     and "peer 10.0.0.2 down" are one incident
``message``          the whole message, as sent
``field:<name>``     the event's field ``name`` as posted (``field:ifIndex``), missing or not
``group:<name>``     the named group ``(?P<name>...)`` of the rule's regex, as it matched the
                     message (regex rules only)
===================  ============================================================================

The rule id is always part of the fingerprint, so the keys of two rules never meet. A key is checked
when the rule is saved (:func:`parse`, through :func:`mutt_app.rules.validate.validate_rule_mapping`:
unknown parts, a ``group:`` the regex does not have, or a repeated part are refused with a message
naming them) and compiled once with the rule snapshot (:meth:`DedupKey.compile`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from mutt_app.db.models import MAX_DEDUP_KEY_CHARS
from mutt_app.events.fingerprint import digest, incident_template, template

PARTS = ("host", "severity", "template", "masked", "message")
"""The parts that take no name."""
NAMED_PARTS = ("field", "group")
"""The parts that take a name after a colon (``field:ifIndex``, ``group:peer``)."""
DEFAULT_KEY = "host, severity, template"
"""The key of a rule that sets none: :func:`mutt_app.events.fingerprint.fingerprint`'s parts."""
MAX_DEDUP_KEY_PARTS = 8
"""Most parts one ``dedup_key`` may name."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


class DedupKeyError(ValueError):
    """A ``dedup_key`` names parts that do not exist (the message says which, and what does)."""


def parse(text: str, group_names: Collection[str] | None) -> tuple[str, ...]:
    """The parts of the dedup key ``text``, in its order, each as ``host`` or ``group:peer``.

    ``group_names``: the named groups of the rule's regex; None for a rule that is not a regex
    rule (then no ``group:`` part is allowed). Raises :class:`DedupKeyError`.
    """
    if not isinstance(text, str):
        raise DedupKeyError(f"dedup_key must be text, not {text!r}")
    if len(text) > MAX_DEDUP_KEY_CHARS:
        raise DedupKeyError(
            f"dedup_key is {len(text):,} characters; at most {MAX_DEDUP_KEY_CHARS}"
            " (MAX_DEDUP_KEY_CHARS) are allowed"
        )
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise DedupKeyError(f"dedup_key names no part; name some of {_known()} (or leave it unset)")
    if len(parts) > MAX_DEDUP_KEY_PARTS:
        raise DedupKeyError(
            f"dedup_key names {len(parts)} parts; at most {MAX_DEDUP_KEY_PARTS} are allowed"
        )
    checked: list[str] = []
    for part in parts:
        kind, colon, name = part.partition(":")
        kind, name = kind.strip().lower(), name.strip()
        if not colon and kind in PARTS:
            checked.append(kind)
        elif colon and kind in NAMED_PARTS and _NAME.fullmatch(name):
            _check_group(kind, name, group_names)
            checked.append(f"{kind}:{name}")
        else:
            raise DedupKeyError(f"dedup_key: unknown part {part!r}; the parts are {_known()}")
    repeated = sorted({part for part in checked if checked.count(part) > 1})
    if repeated:
        raise DedupKeyError(f"dedup_key names {', '.join(repeated)} more than once")
    return tuple(checked)


def _check_group(kind: str, name: str, group_names: Collection[str] | None) -> None:
    if kind != "group":
        return
    if group_names is None:
        raise DedupKeyError(f"dedup_key: group:{name} needs a regex rule with that named group")
    if name not in group_names:
        have = ", ".join(sorted(group_names)) or "none"
        raise DedupKeyError(
            f"dedup_key: the rule's regex has no group named {name!r} (its named groups: {have})"
        )


def _known() -> str:
    return ", ".join((*PARTS, "field:<name>", "group:<name> (regex rules)"))


@dataclass(frozen=True, slots=True)
class DedupKey:
    """A compiled dedup key: its parts and, for ``group:`` parts, the rule's regex."""

    parts: tuple[str, ...]
    regex: Any = None  # re2's compiled regex of the rule, when a part is a group

    @classmethod
    def compile(cls, text: str, regex: Any = None) -> DedupKey:
        """The key ``text`` of a rule whose compiled regex (re2, None if not a regex rule) is
        ``regex``; :class:`DedupKeyError` if it is not a key of that rule."""
        names = None if regex is None else tuple(regex.groupindex)
        parts = parse(text, names)
        return cls(parts, regex if any(p.startswith("group:") for p in parts) else None)

    @property
    def text(self) -> str:
        """The key as a rule stores it, canonical: ``host, severity, group:peer``."""
        return ", ".join(self.parts)

    def values(
        self,
        hostname: str,
        message: str,
        severity: int | None,
        raw: Mapping[str, Any] | None = None,
    ) -> list[tuple[str, str | None]]:
        """Each part's value for an alert (``raw``: the event as posted); None: it has none."""
        match = self.regex.search(message) if self.regex is not None else None
        raw = raw or {}
        values: list[tuple[str, str | None]] = []
        for part in self.parts:
            kind, _, name = part.partition(":")
            value: str | None
            if kind == "host":
                value = hostname.lower()
            elif kind == "severity":
                value = None if severity is None else str(severity)
            elif kind == "template":
                value = incident_template(message)
            elif kind == "masked":
                value = template(message)
            elif kind == "message":
                value = message
            elif kind == "field":
                value = _field(raw.get(name))
            else:  # group
                value = match.group(name) if match is not None else None
            values.append((part, value))
        return values

    def fingerprint(
        self,
        rule_id: int | None,
        hostname: str,
        message: str,
        severity: int | None,
        raw: Mapping[str, Any] | None = None,
    ) -> str:
        """The alert's fingerprint under this key (:func:`mutt_app.events.fingerprint.digest`)."""
        return digest(rule_id, self.values(hostname, message, severity, raw))


def _field(value: Any) -> str | None:
    # Canonical JSON, so 1 and "1" stay apart; a missing field and null are both absent.
    if value is None:
        return None
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


DEFAULT = DedupKey(parse(DEFAULT_KEY, None))
"""The key of every rule that sets none (and of unmatched alerts)."""
