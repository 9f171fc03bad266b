"""Secrets from HashiCorp Vault: AppRole login, a KV v2 read, and a token that never lapses.

A process with ``VAULT_ADDR`` set logs in with AppRole (VAULT_ROLE_ID plus the secret id kept in
VAULT_SECRET_ID_FILE), reads the KV v2 secret at VAULT_SECRETS_PATH and lays the API keys and rotating
passwords it finds over its settings (:func:`overlay_secrets`). Long-running processes also keep their
token alive with a :class:`TokenRenewer` (:func:`start_renewal`), which renews the token before it
expires and logs in again when renewal is no longer possible.

Only the *names* of secrets are ever logged, never their values.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping

import hvac
import hvac.exceptions
import requests
from pydantic import ValidationError

from mutt_app.config import Settings

__all__ = [
    "SECRET_KEYS",
    "TokenRenewer",
    "VaultError",
    "login",
    "overlay_secrets",
    "read_secrets",
    "start_renewal",
]

log = logging.getLogger(__name__)

SECRET_KEYS = (
    "INGEST_API_KEY",
    "WEBUI_API_KEY",
    "WEBUI_API_KEYS",
    "MOOG_API_KEY",
    "REDIS_PASS_CURRENT",
    "REDIS_PASS_NEXT",
    "REDIS_SENTINEL_PASSWORD",
    "DB_PASS_CURRENT",
    "DB_PASS_NEXT",
)
"""The keys of the Vault secret that MUTT lays over its settings (the environment variable names)."""

_TIMEOUT = 10  # seconds per Vault request: a hung Vault must not hang a worker's start forever


class VaultError(RuntimeError):
    """Vault could not be used; the message is one line saying what and where."""


_MULTIERROR_HEADING = re.compile(r"^\d+ errors? occurred:$")


def _one_line(error: object) -> str:
    """Vault's (and OpenBao's) Go multierror text, "1 error occurred:\\n\\t* permission denied\\n",
    as "permission denied": the items without the heading, on one line."""
    items = (line.strip().removeprefix("* ") for line in str(error).splitlines())
    return "; ".join(item for item in items if item and not _MULTIERROR_HEADING.match(item))


def _reason(exc: Exception) -> str:
    """One line about a failed Vault request, without hvac's ", on GET <url>" suffix."""
    if isinstance(exc, hvac.exceptions.VaultError):
        if exc.errors:
            return "; ".join(_one_line(e) for e in exc.errors)
        return str(exc.args[0]) if exc.args and exc.args[0] else type(exc).__name__
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    if isinstance(exc, requests.Timeout):
        return f"no answer within {_TIMEOUT}s"
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _new_client(settings: Settings) -> hvac.Client:
    if not settings.vault_addr:
        raise VaultError("VAULT_ADDR is not set")
    verify: bool | str = str(settings.vault_ca_cert_path) if settings.vault_ca_cert_path else True
    return hvac.Client(url=settings.vault_addr, verify=verify, timeout=_TIMEOUT)


def _approle_login(client: hvac.Client, settings: Settings) -> None:
    """Log ``client`` in with AppRole; on success the client carries the new token."""
    if not settings.vault_role_id:
        raise VaultError("VAULT_ROLE_ID is not set")
    path = settings.vault_secret_id_file
    try:
        # Read on every login, not once: the file may have been replaced with a fresh secret id.
        secret_id = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise VaultError(f"cannot read secret id file {path}: {exc.strerror or exc}") from None
    if not secret_id:
        raise VaultError(f"secret id file {path} is empty")
    try:
        client.auth.approle.login(role_id=settings.vault_role_id, secret_id=secret_id)
    except (
        hvac.exceptions.InvalidRequest,
        hvac.exceptions.Unauthorized,
        hvac.exceptions.Forbidden,
    ) as exc:
        raise VaultError(
            f"AppRole login refused by {settings.vault_addr}: {_reason(exc)}"
        ) from None
    except (hvac.exceptions.VaultError, requests.RequestException) as exc:
        raise VaultError(f"AppRole login at {settings.vault_addr} failed: {_reason(exc)}") from None


def login(settings: Settings) -> hvac.Client:
    """A client for VAULT_ADDR logged in with AppRole.

    The role id is VAULT_ROLE_ID; the secret id is the (stripped) content of VAULT_SECRET_ID_FILE. TLS
    is verified against VAULT_CA_CERT_PATH when set, else the system's CAs. Raises :class:`VaultError`.
    """
    client = _new_client(settings)
    _approle_login(client, settings)
    log.info("logged in to Vault at %s with AppRole", settings.vault_addr)
    return client


def read_secrets(client: hvac.Client, secrets_path: str) -> dict[str, str]:
    """The key/value pairs of the latest version of the KV v2 secret at ``secrets_path``.

    The first segment of ``secrets_path`` is the mount: ``"secret/mutt"`` is path ``mutt`` of the KV v2
    engine mounted at ``secret``. Raises :class:`VaultError`.
    """
    mount, _, path = secrets_path.strip("/").partition("/")
    if not mount or not path:
        raise VaultError(f"secrets path {secrets_path!r} must be <mount>/<path>, e.g. secret/mutt")
    try:
        response = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, raise_on_deleted_version=True
        )
    except hvac.exceptions.InvalidPath:
        raise VaultError(f"no secrets at {secrets_path}") from None
    except hvac.exceptions.Forbidden as exc:
        raise VaultError(f"reading {secrets_path} refused: {_reason(exc)}") from None
    except (hvac.exceptions.VaultError, requests.RequestException) as exc:
        raise VaultError(f"reading {secrets_path} failed: {_reason(exc)}") from None
    try:
        data = response["data"]["data"]
    except (KeyError, TypeError):
        raise VaultError(f"{secrets_path} is not a KV v2 secret") from None
    if not isinstance(data, Mapping):
        raise VaultError(f"{secrets_path} is not a KV v2 secret")
    return {str(key): str(value) for key, value in data.items() if value is not None}


def overlay_secrets(settings: Settings, *, client: hvac.Client | None = None) -> Settings:
    """A copy of ``settings`` with the secrets found in Vault (Vault wins over the environment).

    Logs in with :func:`login` unless ``client`` is given. Keys of :data:`SECRET_KEYS` found at
    VAULT_SECRETS_PATH replace the setting of the same name; a key that is absent (or empty) leaves the
    setting as it was. Raises :class:`VaultError`.
    """
    client = client if client is not None else login(settings)
    found = read_secrets(client, settings.vault_secrets_path)
    updates: dict[str, str] = {}
    for key in SECRET_KEYS:
        # Accept the lower-case spelling too: people write KV secrets either way.
        value = found.get(key, found.get(key.lower()))
        if value:
            updates[key.lower()] = value
    try:
        # Through the model again, not model_copy(update=...), so the values become SecretStr.
        merged = Settings.model_validate({**settings.model_dump(), **updates})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "?"
        raise VaultError(f"invalid value for {name} in {settings.vault_secrets_path}") from None
    loaded = ", ".join(key.upper() for key in updates) or "none"
    log.info("secrets loaded from Vault %s: %s", settings.vault_secrets_path, loaded)
    return merged


class TokenRenewer:
    """Keeps a client's Vault token alive from a daemon thread.

    Every ``interval`` seconds (VAULT_RENEW_CHECK_INTERVAL) it looks the token up; when fewer than
    ``threshold`` seconds (VAULT_TOKEN_RENEW_THRESHOLD) remain it renews it. When the token cannot be
    renewed (refused, no longer renewable, expired, revoked, or at its maximum TTL) it logs in again with
    AppRole on the same client object, so whoever holds the client keeps a working one. After such a
    re-login, ``on_secrets`` (if given) receives a fresh read of VAULT_SECRETS_PATH.

    The counters ``renewals``, ``failures`` and ``relogins`` are for tests and metrics.
    """

    def __init__(
        self,
        settings: Settings,
        client: hvac.Client,
        *,
        interval: float | None = None,
        threshold: float | None = None,
        on_secrets: Callable[[dict[str, str]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.interval = float(interval or settings.vault_renew_check_interval)
        self.threshold = float(threshold or settings.vault_token_renew_threshold)
        self.on_secrets = on_secrets
        self.renewals = 0
        self.failures = 0
        self.relogins = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True while the renewal thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> TokenRenewer:
        """Start the daemon thread (once); returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="vault-token-renewer", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; returns as soon as any request in flight has finished."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        # Event.wait, not sleep: stop() must not wait out an interval of minutes.
        while not self._stopping.wait(self.interval):
            try:
                self.check()
            except Exception:
                # The thread must outlive any surprise, or the token silently lapses later.
                self.failures += 1
                log.exception("vault token check failed unexpectedly")

    def check(self) -> None:
        """One round: look the token up, renew it or log in again as needed."""
        try:
            info = self.client.auth.token.lookup_self()["data"]
        except requests.RequestException as exc:
            # Vault unreachable: logging in again would fail the same way; try next round.
            self.failures += 1
            log.warning(
                "vault token lookup failed: %s; retrying in %gs", _reason(exc), self.interval
            )
            return
        except hvac.exceptions.VaultError as exc:
            self.failures += 1
            log.warning("vault token no longer valid (%s); logging in again", _reason(exc))
            self._relogin()
            return
        ttl = int(info.get("ttl") or 0)
        if ttl == 0 and not info.get("expire_time"):
            # A token without a TTL (e.g. root) never expires: nothing to do.
            log.debug("vault token does not expire")
            return
        if ttl >= self.threshold:
            log.debug("vault token ttl %ds, no renewal needed", ttl)
            return
        if ttl <= 0 or not info.get("renewable", False):
            log.info("vault token expired or not renewable (ttl %ds); logging in again", ttl)
            self._relogin()
            return
        try:
            response = self.client.auth.token.renew_self()
        except (hvac.exceptions.VaultError, requests.RequestException) as exc:
            self.failures += 1
            log.warning("vault token renewal failed: %s; logging in again", _reason(exc))
            self._relogin()
            return
        new_ttl = int(response.get("auth", {}).get("lease_duration") or 0)
        if new_ttl <= ttl:
            # Vault caps renewals at the token's max TTL; a renewal that gains nothing means the
            # token is about to end for good.
            log.info("vault token at its maximum TTL (ttl %ds); logging in again", new_ttl)
            self._relogin()
            return
        self.renewals += 1
        log.info("vault token renewed: ttl %ds -> %ds", ttl, new_ttl)

    def _relogin(self) -> None:
        try:
            _approle_login(self.client, self.settings)
        except VaultError as exc:
            self.failures += 1
            log.error("vault re-login failed: %s; retrying in %gs", exc, self.interval)
            return
        self.relogins += 1
        log.info("logged in to Vault again with AppRole")
        if self.on_secrets is None:
            return
        try:
            secrets = read_secrets(self.client, self.settings.vault_secrets_path)
        except VaultError as exc:
            self.failures += 1
            log.error("vault secrets not re-read after re-login: %s", exc)
            return
        try:
            self.on_secrets(secrets)
        except Exception:
            log.exception("vault on_secrets callback failed")


def start_renewal(
    settings: Settings,
    client: hvac.Client,
    *,
    on_secrets: Callable[[dict[str, str]], None] | None = None,
) -> TokenRenewer:
    """Start keeping ``client``'s token alive (see :class:`TokenRenewer`); returns the renewer.

    Call it in the process that uses the client: a thread does not survive a fork, so a prefork
    worker's children each need their own (or none, if they do not talk to Vault after start-up).
    """
    renewer = TokenRenewer(settings, client, on_secrets=on_secrets)
    renewer.start()
    log.info(
        "vault token renewal started: check every %gs, renew below %gs ttl",
        renewer.interval,
        renewer.threshold,
    )
    return renewer


def settings_for_service(settings: Settings) -> Settings:
    """For a long-running process: log in, overlay the secrets, and keep the token alive.

    Returns ``settings`` unchanged when VAULT_ADDR is not set. Raises :class:`VaultError`.
    """
    if not settings.vault_addr:
        return settings
    client = login(settings)
    settings = overlay_secrets(settings, client=client)
    start_renewal(settings, client)
    return settings
