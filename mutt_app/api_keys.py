"""REST API keys and the roles they carry.

Two ways to configure keys:

- ``WEBUI_API_KEY``: one key with the admin role (audited as ``changed_by="api-key"``);
- ``WEBUI_API_KEYS``: scoped keys, ``name:role:key`` separated by commas (e.g.
  ``grafana:viewer:...,oncall:operator:...,ci:admin:...``). When it is set it is the whole list and
  WEBUI_API_KEY is not accepted, so that configuring scoped keys never leaves an admin key behind by
  accident. Changes made with a scoped key are audited as ``changed_by="api:<name>"``.

Roles are the accounts' (viewer < operator < admin): viewer reads, operator also replays dead letters
and changes the dynamic configuration, admin changes everything.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field

from mutt_app.names import ROLES

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_KEY_CHARS = 16
UNSCOPED_NAME = "default"
UNSCOPED_CHANGED_BY = "api-key"  # as audited before scoped keys existed


@dataclass(frozen=True)
class ApiKey:
    """One accepted key: its name (for the audit), its role, and the secret itself."""

    name: str
    role: str
    secret: str = field(repr=False)
    scoped: bool = True

    @property
    def changed_by(self) -> str:
        """How config_audit_log names changes made with this key."""
        return f"api:{self.name}" if self.scoped else UNSCOPED_CHANGED_BY

    def has_role(self, role: str) -> bool:
        """Whether this key's role is ``role`` or a more privileged one."""
        return ROLES.index(self.role) >= ROLES.index(role)


def parse_api_keys(text: str) -> tuple[ApiKey, ...]:
    """WEBUI_API_KEYS (``name:role:key,...``) as keys; ValueError naming the first bad entry.

    The key is everything after the second colon, so it may contain colons but not commas.
    """
    keys: list[ApiKey] = []
    for index, entry in enumerate(part.strip() for part in text.split(",")):
        if not entry:
            continue
        parts = entry.split(":", 2)
        if len(parts) != 3:
            raise ValueError(f"entry {index + 1} is not name:role:key")
        name, role, secret = (part.strip() for part in parts)
        if not NAME.match(name):
            raise ValueError(
                f"entry {index + 1}: name {name!r} must be letters, digits, '_', '.', '-'"
            )
        if role not in ROLES:
            raise ValueError(f"key {name!r}: role must be one of {', '.join(ROLES)}")
        if len(secret) < MIN_KEY_CHARS:
            raise ValueError(f"key {name!r}: the key must have at least {MIN_KEY_CHARS} characters")
        if any(k.name == name for k in keys):
            raise ValueError(f"key name {name!r} is listed twice")
        if any(k.secret == secret for k in keys):
            raise ValueError(f"key {name!r} has the same key as another entry")
        keys.append(ApiKey(name, role, secret))
    if not keys:
        raise ValueError("lists no key")
    return tuple(keys)


def accepted_keys(scoped: str | None, unscoped: str | None) -> tuple[ApiKey, ...]:
    """The keys the API accepts: WEBUI_API_KEYS when set, else WEBUI_API_KEY as admin, else none."""
    if scoped:
        return parse_api_keys(scoped)
    if unscoped:
        return (ApiKey(UNSCOPED_NAME, "admin", unscoped, scoped=False),)
    return ()


def identify(keys: tuple[ApiKey, ...], given: str) -> ApiKey | None:
    """The key whose secret is ``given``, compared in constant time against every key."""
    # Bytes, because compare_digest refuses non-ASCII str; a header is latin-1, always encodable.
    given_bytes = given.encode("utf-8")
    found = None
    for key in keys:  # no early exit: the time does not tell which entry matched
        if hmac.compare_digest(given_bytes, key.secret.encode("utf-8")):
            found = key
    return found
