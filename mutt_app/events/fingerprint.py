"""Message templates and alert fingerprints: what makes two alerts "the same alert again".

:func:`template` masks the parts of a message that change between repeats of one condition, so
"Interface Gi0/1 changed state to down (flap 1041)" and "... (flap 1042)" give one template.
Masks, applied in this order (each to what the earlier ones left):

========  ===================================================================================
``<uuid>``  UUIDs, ``8-4-4-4-12`` hex digits, any case
``<ts>``    date-times: ISO 8601 (``2026-12-01T10:15:30.123Z``, with a space or ``T``, optional
            fraction and offset) and syslog's ``Dec  1 10:15:30`` (optional fraction)
``<time>``  a time of day on its own: ``10:15:30``, optional fraction (``*00:01:02.345``)
``<mac>``   MAC addresses: six hex pairs joined by ``:`` or ``-``, and Cisco's ``0011.2233.4455``
``<ip>``    IPv4 and IPv6 addresses (as :mod:`ipaddress` reads them), with an optional
            ``/prefix`` length
``<hex>``   ``0x``-prefixed hex numbers, and bare hex strings of 8 or more characters that hold
            both a digit and a letter a-f (ids, hashes)
``<n>``     standalone numbers: a run of digits (optional sign-free decimal part, optional unit
            ``ms us ns s sec % kb mb gb bps kbps mbps gbps``, any case) that is not part of a
            word, path or dotted version. ``Gi0/1``, ``eth0``, ``%LINK-3-UPDOWN`` and
            ``15.2.4`` are identifiers and stay; ``counter 1234``, ``=42``, ``(35ms)`` are masked.
========  ===================================================================================

Finally, runs of whitespace become one space and the ends are trimmed. Case is kept.

:func:`fingerprint` is a digest of the lower-cased host name, the matched rule's id and the
template: the key deduplication counts repeats on.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re

__all__ = ["fingerprint", "template"]

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


def _address(match: re.Match[str]) -> str:
    text = match.group(0)
    # "fe80::1: link down": a colon ending the address belongs to the sentence.
    tail = ":" if text.endswith(":") and not text.endswith("::") else ""
    try:
        ipaddress.ip_interface(text.removesuffix(tail))
    except ValueError:
        return text
    return "<ip>" + tail


def template(message: str) -> str:
    """``message`` with its volatile parts masked (see the module's table), spaces collapsed."""
    text = _UUID.sub("<uuid>", message)
    text = _ISO_TIMESTAMP.sub("<ts>", text)
    text = _SYSLOG_TIMESTAMP.sub("<ts>", text)
    text = _TIME_OF_DAY.sub("<time>", text)
    text = _MAC.sub("<mac>", text)
    text = _IPV6_CANDIDATE.sub(_address, text)
    text = _IPV4_CANDIDATE.sub(_address, text)
    text = _HEX.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    return _SPACES.sub(" ", text).strip()


def fingerprint(hostname: str, rule_id: int | None, message: str) -> str:
    """The dedup key of an alert: a digest of host (lower-cased), rule id and ``template(message)``.

    Host names are compared case-insensitively, as DNS does (and as Moog's signature is built).
    """
    rule = "none" if rule_id is None else str(rule_id)
    key = "\x1f".join((hostname.lower(), rule, template(message)))
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
