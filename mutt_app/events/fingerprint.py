"""Message templates and alert fingerprints: what makes two alerts "the same alert again".

Two normalisers mask the parts of a message that change between repeats of one condition, so
"Interface Gi0/1 changed state to down (flap 1041)" and "... (flap 1042)" read the same. They differ
in what they are for:

- :func:`incident_template` is deduplication's: it masks only what varies between repeats of *one*
  incident, and keeps what names the thing that failed, so "BGP peer 10.0.0.1 down" and "BGP peer
  10.0.0.2 down", or "power supply 1 failed" and "power supply 2 failed", stay apart.
- :func:`template` is grouping's (:mod:`mutt_app.watch.unhandled`'s unhandled templates and
  :mod:`mutt_app.holdback.storms`' storm summaries): it also masks addresses and every standalone
  number, so the thirty peers of one "BGP neighbor <ip> Down" show as one line with a count and one
  suggested rule.

Masks and keeps, applied in this order (each to what the earlier ones left):

===========  ==================================================  ===========  =================
mask         what                                                template()   incident_template()
===========  ==================================================  ===========  =================
``<uuid>``   UUIDs, ``8-4-4-4-12`` hex digits, any case          masked       masked
``<ts>``     date-times: ISO 8601 (``2026-12-01T10:15:30.123Z``,  masked       masked
             a space or ``T``, optional fraction and offset) and
             syslog's ``Dec  1 10:15:30`` (optional fraction)
``<time>``   a time of day on its own: ``10:15:30``, optional     masked       masked
             fraction (``*00:01:02.345``)
``<mac>``    MAC addresses: six hex pairs joined by ``:`` or      masked       kept (lower case)
             ``-``, and Cisco's ``0011.2233.4455``
``<ip>``     IPv4 and IPv6 addresses (as :mod:`ipaddress` reads   masked       kept (IPv6 in its
             them), with an optional ``/prefix`` length                        short form)
(identity)   a number that names a thing: the number right after  masked       kept
             one of :data:`IDENTITY_WORDS` (``slot 3``, ``peer
             2``, ``vlan 100``, ``power supply 1``, ``Fan-2``,
             ``module #4``, ``port 1/0/3``)
``<hex>``    ``0x``-prefixed hex numbers, and bare hex strings    masked       masked
             of 8 or more characters that hold both a digit and
             a letter a-f (ids, hashes)
``<n>``      standalone numbers: a run of digits (optional        masked       masked
             sign-free decimal part, optional unit ``ms us ns s
             sec % kb mb gb bps kbps mbps gbps``, any case) that
             is not part of a word, path or dotted version
===========  ==================================================  ===========  =================

So counters ("flap 1041"), durations ("35ms", "hold time 180s"), percentages ("CPU at 93%") and other
values are masked by both. ``Gi0/1``, ``eth0``, ``PSU1``, ``%LINK-3-UPDOWN`` and ``15.2.4`` are
identifiers (part of a word, path or dotted version) and stay in both. Finally, runs of whitespace
become one space and the ends are trimmed. Case is kept.

:func:`fingerprint` is the default dedup key: a digest of the lower-cased host name, the matched
rule's id, the event's syslog severity (an escalation from 3 to 2 is a new incident) and the
incident template. A rule may name its own key parts instead (:mod:`mutt_app.rules.dedup_key`);
:func:`digest` makes the fingerprint of any parts, so both agree on the default.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Sequence
from functools import lru_cache

import orjson

__all__ = [
    "IDENTITY_WORDS",
    "default_parts",
    "digest",
    "fingerprint",
    "incident_template",
    "template",
]

IDENTITY_WORDS = (
    "power supply", "psu", "pem", "fan tray", "fan", "slot", "subslot", "module", "card",
    "linecard", "fpc", "pic", "mic", "chassis", "member", "stack", "switch", "unit", "node",
    "sensor", "cpu", "core", "disk", "drive", "bay", "port", "interface", "channel", "lane",
    "link", "circuit", "tunnel", "vlan", "vni", "vrf", "peer", "neighbor", "neighbour", "nbr",
    "asn", "area", "instance", "queue",
)  # fmt: skip
"""Words after which a number names a thing (``slot 3``), not a value: the incident template keeps
that number. Matched case-insensitively, as whole words, optionally plural; whitespace, ``-`` or
``_`` between two words; then an optional ``#``, ``:``, ``=`` or ``no.``."""

_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
_ISO_TIMESTAMP = re.compile(
    r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?(?![\w:])"
)
_SYSLOG_TIMESTAMP = re.compile(
    r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d{1,2} +\d{2}:\d{2}:\d{2}(?:\.\d+)?\b"
)
_TIME_OF_DAY = re.compile(r"(?<![\w:.])\d{1,2}:\d{2}:\d{2}(?:\.\d+)?(?![\w:])")
_MAC = re.compile(
    r"(?<![\w:.-])(?:[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}"
    r"|[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4})(?![\w:.-])",
    re.I,
)
# Candidates only; ipaddress decides what is an address (so "1:2" or "999.1.1.1" are not).
_IPV6_CANDIDATE = re.compile(
    r"(?<![\w:.])[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:\d{1,3}(?:\.\d{1,3}){3})?(?:/\d{1,3})?"
    r"(?![\w.]|:\w)",
    re.I,
)
_IPV4_CANDIDATE = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?:/\d{1,2})?(?![\w.])")
_HEX = re.compile(
    r"\b0x[0-9a-f]+\b|(?<![\w-])(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}(?![\w-])", re.I
)
_NUMBER = re.compile(
    r"(?<![\w./:-])\d+(?:\.\d+)?(?:ms|us|ns|sec|s|%|kbps|mbps|gbps|bps|kb|mb|gb)?(?![\w/:-]|\.\d)",
    re.I,
)
_SPACES = re.compile(r"\s+")
_IDENTITY = re.compile(
    r"\b(?:"
    + "|".join(re.escape(word).replace(r"\ ", r"[\s_-]?\s*") for word in IDENTITY_WORDS)
    + r")s?[ \t]*(?:[#:=]|no\.)?[ \t-]*\d+(?:/\d+)*(?![\w%]|[.,:/]\d)",
    re.I,
)
# Kept parts wait behind a token the later masks cannot touch (no digit, no hex letter, no word
# character around it): a NUL, a private-use character numbering the part, a NUL. Ingest refuses
# NULs in a message, so no message holds one.
_KEPT = re.compile("\x00([\ue000-\uf8ff])\x00")
_KEPT_BASE = 0xE000
_KEPT_MAX = 0xF8FF - _KEPT_BASE


def _address(match: re.Match[str], keep: Callable[[str], str] | None = None) -> str:
    text = match.group(0)
    # "fe80::1: link down": a colon ending the address belongs to the sentence.
    tail = ":" if text.endswith(":") and not text.endswith("::") else ""
    text = text.removesuffix(tail)
    try:
        address = ipaddress.ip_interface(text)
    except ValueError:
        return match.group(0)
    if keep is None:
        return "<ip>" + tail
    # One address, one spelling: 2001:DB8:0::1 and 2001:db8::1 are the same peer.
    return keep(str(address) if "/" in text else str(address.ip)) + tail


def _normalise(message: str, *, keep_identities: bool) -> str:
    text = _UUID.sub("<uuid>", message)
    text = _ISO_TIMESTAMP.sub("<ts>", text)
    text = _SYSLOG_TIMESTAMP.sub("<ts>", text)
    text = _TIME_OF_DAY.sub("<time>", text)
    kept: list[str] = []
    if keep_identities:

        def keep(part: str) -> str:
            if len(kept) > _KEPT_MAX:  # more parts than tokens: the rest are left to the masks
                return part
            kept.append(part)
            return f"\x00{chr(_KEPT_BASE + len(kept) - 1)}\x00"

        text = _MAC.sub(lambda m: keep(m.group(0).lower()), text)
        text = _IPV6_CANDIDATE.sub(lambda m: _address(m, keep), text)
        text = _IPV4_CANDIDATE.sub(lambda m: _address(m, keep), text)
        text = _IDENTITY.sub(lambda m: keep(m.group(0)), text)
    else:
        text = _MAC.sub("<mac>", text)
        text = _IPV6_CANDIDATE.sub(_address, text)
        text = _IPV4_CANDIDATE.sub(_address, text)
    text = _HEX.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    if kept:
        text = _KEPT.sub(lambda m: kept[ord(m.group(1)) - _KEPT_BASE], text)
    return _SPACES.sub(" ", text).strip()


# Deduplication and the storm budgets template every forwardable alert, and a storm repeats the
# same few messages across alerts and batches, while one message takes a dozen regex passes (and
# ipaddress for each address). The templates of recent messages are kept; a long message is not,
# so the cache stays small.
_REMEMBERED = 4096
_REMEMBERED_CHARS = 1024


@lru_cache(maxsize=_REMEMBERED)
def _remembered(message: str, keep_identities: bool) -> str:
    return _normalise(message, keep_identities=keep_identities)


def _templated(message: str, keep_identities: bool) -> str:
    if len(message) > _REMEMBERED_CHARS:
        return _normalise(message, keep_identities=keep_identities)
    return _remembered(message, keep_identities)


def template(message: str) -> str:
    """``message`` with its volatile parts, addresses and numbers masked (the module's table),
    spaces collapsed: the grouping template ("what repeats" across peers and hosts)."""
    return _templated(message, False)


def incident_template(message: str) -> str:
    """``message`` with what varies between repeats of one incident masked, and its addresses and
    numbered identities kept (the module's table), spaces collapsed: deduplication's template."""
    return _templated(message, True)


def digest(rule_id: int | None, parts: Sequence[tuple[str, str | None]]) -> str:
    """The fingerprint of an alert of ``rule_id`` whose dedup key parts have these (name, value)s.

    Encoded as JSON, so no value can run into the next one.
    """
    key = orjson.dumps(["none" if rule_id is None else str(rule_id), parts])
    return hashlib.blake2b(key, digest_size=16).hexdigest()


def default_parts(
    hostname: str, message: str, severity: int | None
) -> list[tuple[str, str | None]]:
    """The default dedup key's parts: host (lower-cased), syslog severity, incident template."""
    return [
        ("host", hostname.lower()),
        ("severity", None if severity is None else str(severity)),
        ("template", incident_template(message)),
    ]


def fingerprint(hostname: str, rule_id: int | None, message: str, severity: int | None) -> str:
    """The default dedup key of an alert: a digest of host (lower-cased, as DNS and Moog's signature
    compare names), rule id, syslog severity and ``incident_template(message)``."""
    return digest(rule_id, default_parts(hostname, message, severity))
