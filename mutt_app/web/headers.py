"""Browser security headers on every answer of the web app (UI, log-in, API, static files, errors).

- Content-Security-Policy: scripts, styles, images, fonts and fetches from this site only; no inline
  ``<script>`` or ``<style>`` (the pages load theirs from the static folders), no plugins, no
  framing, forms post only here. Two exceptions, as narrow as the pages allow: the inline event
  handlers of Flask-Admin's templates and ours (delete and purge confirmations, bulk actions) are
  allowed by the hash of their exact text ('unsafe-hashes'), and ``style="..."`` attributes, which
  the templates and Bootstrap's scripts use, are allowed (``style-src-attr``), styles being unable to
  run code.
- X-Frame-Options: DENY (frame-ancestors for browsers without CSP level 2), X-Content-Type-Options:
  nosniff, Referrer-Policy: same-origin (URLs carry filters and ids; other sites need not see them).

Headers a view set itself are kept.
"""

from __future__ import annotations

import base64
import hashlib

from flask import Flask, Response

INLINE_HANDLERS = (
    # Flask-Admin's bulk actions (actions.html): the rules list's, and its own bulk delete.
    "return modelActions.execute('activate');",
    "return modelActions.execute('deactivate');",
    "return modelActions.execute('delete');",
    # Its filter menu (model/layout.html).
    "return false;",
    # The delete confirmation of each list row (model/row_actions.html and our admin/mutt/list.html).
    "return faHelpers.safeConfirm('Are you sure you want to delete this record?');",
    # The dead-letter page's purge confirmation (admin/mutt/dlq_details.html).
    "return confirm('Purge this item for good?');",
)
"""The exact text of every inline event handler the pages have (tests check the pages against it)."""


def _hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "script-src-attr 'unsafe-hashes' " + " ".join(_hash(h) for h in INLINE_HANDLERS),
        "style-src 'self'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _add_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def init_security_headers(app: Flask) -> None:
    """Add :data:`HEADERS` to every response of ``app``."""
    app.after_request(_add_headers)
