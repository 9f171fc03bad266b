"""A small real Vault-compatible HTTP server for the tests: AppRole login, KV v2 reads, token TTLs.

It answers exactly what :mod:`mutt_app.vault` asks of Vault through hvac, with Vault's JSON shapes and
status codes:

- ``POST /v1/auth/approle/login``: role_id + secret_id -> a token (400 otherwise);
- ``GET /v1/<mount>/data/<path>``: a KV v2 secret (404 when absent, 403 for a bad or expired token);
- ``GET /v1/auth/token/lookup-self`` and ``POST /v1/auth/token/renew-self``.

Tokens expire for real (wall clock), so renewing before expiry is observable; ``token_max_ttl`` caps
renewals the way Vault's max TTL does. ``calls`` counts requests per endpoint.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOGIN = "approle-login"
KV_READ = "kv-read"
LOOKUP_SELF = "lookup-self"
RENEW_SELF = "renew-self"


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class _Token:
    accessor: str
    created: float
    expires: float
    max_expires: float | None
    policies: list[str] = field(default_factory=lambda: ["default", "mutt"])


class VaultServer:
    """A Vault stand-in on 127.0.0.1 and a free port, served from a background thread.

    ``with VaultServer(role_id="r", secret_id="s", secrets={"secret/mutt": {...}}, token_ttl=3) as
    vault:`` then point VAULT_ADDR at ``vault.url``.
    """

    def __init__(
        self,
        *,
        role_id: str,
        secret_id: str,
        secrets: dict[str, dict[str, Any]] | None = None,
        token_ttl: float = 3600,
        token_max_ttl: float | None = None,
    ) -> None:
        self.role_id = role_id
        self.secret_id = secret_id
        self.secrets: dict[str, dict[str, Any]] = {
            path.strip("/"): dict(data) for path, data in (secrets or {}).items()
        }
        self.token_ttl = token_ttl
        self.token_max_ttl = token_max_ttl
        self.calls: Counter[str] = Counter()
        self.tokens: dict[str, _Token] = {}
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> VaultServer:
        handler = type("_BoundHandler", (_Handler,), {"vault": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> VaultServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- test controls -------------------------------------------------------------------------

    def revoke_all(self) -> None:
        """Forget every token, as if they had been revoked (or Vault had lost them)."""
        with self.lock:
            self.tokens.clear()

    def set_secret(self, path: str, data: dict[str, Any]) -> None:
        """Write a new version of the KV secret at ``path`` ("secret/mutt")."""
        with self.lock:
            self.secrets[path.strip("/")] = dict(data)

    def ttl(self, token: str) -> float | None:
        """Seconds ``token`` has left, or None if unknown or expired."""
        with self.lock:
            found = self._valid(token)
            return None if found is None else found.expires - time.time()

    # --- behaviour (called from the handler threads) -------------------------------------------

    def _valid(self, token: str | None) -> _Token | None:
        found = self.tokens.get(token or "")
        if found is None:
            return None
        if found.expires <= time.time():
            del self.tokens[token or ""]
            return None
        return found

    def _lease(self, now: float, found_max: float | None) -> float:
        """A new lease: the token TTL, capped by what is left of the max TTL (as Vault does)."""
        return (
            self.token_ttl if found_max is None else max(0.0, min(self.token_ttl, found_max - now))
        )

    def _auth_block(self, token: str, found: _Token, lease: float) -> dict[str, Any]:
        return {
            "client_token": token,
            "accessor": found.accessor,
            "policies": found.policies,
            "token_policies": found.policies,
            "metadata": {"role_name": "mutt"},
            "lease_duration": int(lease),
            "renewable": True,
            "entity_id": "",
            "token_type": "service",
            "orphan": True,
        }

    def login(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.calls[LOGIN] += 1
            if body.get("role_id") != self.role_id or body.get("secret_id") != self.secret_id:
                return 400, {"errors": ["invalid role or secret ID"]}
            now = time.time()
            token = "hvs." + secrets.token_urlsafe(24)
            max_expires = now + self.token_max_ttl if self.token_max_ttl is not None else None
            lease = self._lease(now, max_expires)
            found = _Token(
                accessor=secrets.token_hex(12),
                created=now,
                expires=now + lease,
                max_expires=max_expires,
            )
            self.tokens[token] = found
            auth = self._auth_block(token, found, lease)
        return 200, {"auth": auth, "data": None, "lease_duration": 0, "renewable": False}

    def lookup_self(self, token: str | None) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.calls[LOOKUP_SELF] += 1
            found = self._valid(token)
            if found is None:
                return 403, {"errors": ["permission denied"]}
            now = time.time()
            data = {
                "accessor": found.accessor,
                "creation_time": int(found.created),
                "creation_ttl": int(self.token_ttl),
                "display_name": "approle",
                "entity_id": "",
                "expire_time": _iso(found.expires),
                "explicit_max_ttl": int(self.token_max_ttl or 0),
                "id": token,
                "issue_time": _iso(found.created),
                "meta": {"role_name": "mutt"},
                "num_uses": 0,
                "orphan": True,
                "path": "auth/approle/login",
                "policies": found.policies,
                "renewable": True,
                # Vault reports whole seconds, rounded down.
                "ttl": max(0, int(found.expires - now)),
                "type": "service",
            }
        return 200, {"data": data}

    def renew_self(self, token: str | None) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.calls[RENEW_SELF] += 1
            found = self._valid(token)
            if found is None:
                return 403, {"errors": ["permission denied"]}
            now = time.time()
            lease = self._lease(now, found.max_expires)
            found.expires = now + lease
            auth = self._auth_block(token or "", found, lease)
        return 200, {"auth": auth, "data": None}

    def kv_read(self, token: str | None, mount: str, path: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.calls[KV_READ] += 1
            if self._valid(token) is None:
                return 403, {"errors": ["permission denied"]}
            data = self.secrets.get(f"{mount}/{path}")
        if data is None:
            return 404, {"errors": []}
        metadata = {
            "created_time": _iso(time.time()),
            "custom_metadata": None,
            "deletion_time": "",
            "destroyed": False,
            "version": 1,
        }
        return 200, {
            "request_id": secrets.token_hex(8),
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": {"data": dict(data), "metadata": metadata},
            "wrap_info": None,
            "warnings": None,
            "auth": None,
        }


class _Handler(BaseHTTPRequestHandler):
    vault: VaultServer  # set on the per-server subclass
    protocol_version = "HTTP/1.1"  # keep-alive, as requests' session expects

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        # hvac parses error bodies only when the content type is exactly this.
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    def _route(self, method: str) -> tuple[int, dict[str, Any]]:
        path = self.path.split("?", 1)[0]
        token = self.headers.get("X-Vault-Token")
        body = self._body() if method == "POST" else {}
        if method == "POST" and path == "/v1/auth/approle/login":
            return self.vault.login(body)
        if method == "GET" and path == "/v1/auth/token/lookup-self":
            return self.vault.lookup_self(token)
        if method in ("POST", "PUT") and path == "/v1/auth/token/renew-self":
            return self.vault.renew_self(token)
        parts = path.removeprefix("/v1/").split("/", 2)
        if method == "GET" and len(parts) == 3 and parts[1] == "data" and parts[2]:
            return self.vault.kv_read(token, parts[0], parts[2])
        return 404, {"errors": []}

    def do_GET(self) -> None:
        self._send(*self._route("GET"))

    def do_POST(self) -> None:
        self._send(*self._route("POST"))

    def do_PUT(self) -> None:
        self._send(*self._route("PUT"))
