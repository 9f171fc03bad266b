"""Connection URLs and passwords as MUTT's clients need them: a password put into a Redis URL, a
PostgreSQL URL naming several servers in the one form SQLAlchemy passes on to libpq, and the
passwords to try while one is being rotated.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode

from pydantic import SecretStr

__all__ = ["one_host_per_item", "with_password"]


def with_password(url: str, password: str) -> str:
    """``url`` (``redis://``, ``rediss://``) with ``password`` in place of any credentials in it."""
    scheme, rest = url.split("://", 1)
    rest = rest.rsplit("@", 1)[-1]
    return f"{scheme}://:{quote(password, safe='')}@{rest}"


def one_host_per_item(url: str) -> str:
    """A multi-host PostgreSQL URL in the form SQLAlchemy's psycopg2 dialect reads.

    libpq names several servers (a primary and its standbys, tried in order, the first that suits
    ``target_session_attrs`` wins) either in the authority, ``postgresql://u@a:5432,b:5433/db``,
    which SQLAlchemy cannot parse, or as ``?host=a,b&port=5432,5433``, which it passes on as is.
    SQLAlchemy also takes one ``host=name:port`` item per server; the authority form, and a comma
    list of ``name:port`` in one ``host`` item, are rewritten to that. Any other URL is returned
    unchanged.
    """
    scheme, _, rest = url.partition("://")
    authority, _, tail = rest.partition("/")
    userinfo, at, hostlist = authority.rpartition("@")
    path, _, query = tail.partition("?")
    items = parse_qsl(query, keep_blank_values=True)
    has_ports = any(key == "port" for key, _ in items)
    hosts = hostlist.split(",") if "," in hostlist else []
    split = [
        (key, host)
        for key, value in items
        for host in (
            value.split(",") if key == "host" and "," in value and not has_ports else [value]
        )
    ]
    if not hosts and split == items:
        return url
    if hosts:
        authority = f"{userinfo}{at}"
        split = [("host", host) for host in hosts if host] + split
    return f"{scheme}://{authority}/{path}?{urlencode(split)}"


def passwords_to_try(
    current: SecretStr | None, next_: SecretStr | None, plain: SecretStr | None
) -> list[str | None]:
    """The passwords a client tries, in order: both of a rotating pair (current first, no
    repeat) while a rotation is under way, else the plain one (None: no password)."""
    found = [c.get_secret_value() for c in (current, next_) if c is not None]
    if found:
        return list(dict.fromkeys(found))
    return [plain.get_secret_value() if plain else None]
