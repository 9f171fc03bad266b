"""Vault: AppRole login, KV v2 secrets laid over the settings, and a token kept alive.

Against a real HTTP server speaking Vault's API (tests/vault_server.py), through hvac; nothing mocked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from mutt_app.config import Settings, load_settings
from mutt_app.logs import secret_values
from mutt_app.vault import (
    TokenRenewer,
    VaultError,
    login,
    overlay_secrets,
    read_secrets,
    start_renewal,
)
from tests.services import wait_for
from tests.vault_server import KV_READ, LOGIN, RENEW_SELF, VaultServer

ROLE_ID = "mutt-role"
SECRET_ID = "s3cret-id-0123"
VAULT_SECRETS = {
    "INGEST_API_KEY": "vault-ingest-key",
    "MOOG_API_KEY": "vault-moog-key",
    "REDIS_PASS_CURRENT": "vault-redis-current",
    "REDIS_PASS_NEXT": "vault-redis-next",
    "DB_PASS_NEXT": "vault-db-next",
    "UNRELATED": "not-a-mutt-setting",
}


@pytest.fixture
def secret_id_file(tmp_path: Path) -> Path:
    path = tmp_path / "vault_secret_id"
    path.write_text(f"  {SECRET_ID}\n")  # as written by `echo`, with stray whitespace
    return path


def make_vault(**options: object) -> VaultServer:
    options = {"secrets": {"secret/mutt": VAULT_SECRETS}, **options}
    return VaultServer(role_id=ROLE_ID, secret_id=SECRET_ID, **options)  # type: ignore[arg-type]


@pytest.fixture
def vault() -> Iterator[VaultServer]:
    with make_vault() as server:
        yield server


def vault_settings(vault: VaultServer, secret_id_file: Path, **extra: str) -> Settings:
    return load_settings(
        {
            "VAULT_ADDR": vault.url,
            "VAULT_ROLE_ID": ROLE_ID,
            "VAULT_SECRET_ID_FILE": str(secret_id_file),
            **extra,
        }
    )


# --- login -----------------------------------------------------------------------------------


def test_approle_login_gives_an_authenticated_client(
    vault: VaultServer, secret_id_file: Path
) -> None:
    client = login(vault_settings(vault, secret_id_file))

    assert client.is_authenticated()
    assert client.token in vault.tokens
    assert vault.calls[LOGIN] == 1


def test_wrong_secret_id_is_refused_with_a_clear_message(
    vault: VaultServer, secret_id_file: Path
) -> None:
    secret_id_file.write_text("not-the-secret-id\n")

    with pytest.raises(VaultError) as caught:
        login(vault_settings(vault, secret_id_file))

    message = str(caught.value)
    assert message == f"AppRole login refused by {vault.url}: invalid role or secret ID"
    assert "not-the-secret-id" not in message


def test_missing_secret_id_file_names_the_file(vault: VaultServer, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "vault_secret_id"

    with pytest.raises(VaultError, match="cannot read secret id file") as caught:
        login(vault_settings(vault, missing))

    assert str(missing) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert vault.calls[LOGIN] == 0


def test_unreachable_vault_is_a_vault_error(secret_id_file: Path) -> None:
    with make_vault() as gone:
        settings = vault_settings(gone, secret_id_file)
    # The server is stopped: nothing listens on its port any more.
    with pytest.raises(VaultError, match=r"AppRole login at .* failed: connection failed"):
        login(settings)


# --- reading and overlaying secrets --------------------------------------------------------------


def test_read_secrets_splits_the_mount_from_the_path(secret_id_file: Path) -> None:
    with make_vault(secrets={"kv/apps/mutt": {"INGEST_API_KEY": "k", "number": 7}}) as vault:
        client = login(vault_settings(vault, secret_id_file))
        assert read_secrets(client, "kv/apps/mutt") == {"INGEST_API_KEY": "k", "number": "7"}
        assert vault.calls[KV_READ] == 1


def test_absent_secret_path_is_a_clear_error(vault: VaultServer, secret_id_file: Path) -> None:
    client = login(vault_settings(vault, secret_id_file))

    with pytest.raises(VaultError, match=r"^no secrets at secret/other$"):
        read_secrets(client, "secret/other")
    with pytest.raises(VaultError, match="must be <mount>/<path>"):
        read_secrets(client, "secret")


def test_overlay_replaces_env_values_and_leaves_absent_keys_alone(
    vault: VaultServer, secret_id_file: Path
) -> None:
    settings = vault_settings(
        vault,
        secret_id_file,
        INGEST_API_KEY="env-ingest-key",
        WEBUI_API_KEY="env-webui-key",
        DB_PASS_CURRENT="env-db-current",
        LOG_LEVEL="debug",
        REDIS_URL="redis://127.0.0.1:6390/2",
    )

    merged = overlay_secrets(settings)

    def value(secret: SecretStr | None) -> str | None:
        assert secret is None or isinstance(secret, SecretStr)
        return None if secret is None else secret.get_secret_value()

    # Vault wins over the environment ...
    assert value(merged.ingest_api_key) == "vault-ingest-key"
    assert value(merged.moog_api_key) == "vault-moog-key"
    assert merged.redis_passwords() == ["vault-redis-current", "vault-redis-next"]
    assert merged.db_passwords() == ["env-db-current", "vault-db-next"]
    # ... keys Vault does not have keep their environment value, and the rest is untouched.
    assert value(merged.webui_api_key) == "env-webui-key"
    assert merged.log_level == "DEBUG"
    assert merged.redis_url == "redis://127.0.0.1:6390/2"
    assert merged.vault_addr == vault.url
    # The input is not modified (frozen settings are shared).
    assert value(settings.ingest_api_key) == "env-ingest-key"
    assert settings.redis_pass_current is None


def test_overlay_uses_a_given_client_without_logging_in_again(
    vault: VaultServer, secret_id_file: Path
) -> None:
    settings = vault_settings(vault, secret_id_file)
    client = login(settings)

    merged = overlay_secrets(settings, client=client)

    assert vault.calls[LOGIN] == 1
    assert merged.moog_api_key is not None


def test_no_secret_value_reaches_the_logs(
    vault: VaultServer, secret_id_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, hvac's and urllib3's included

    overlay_secrets(vault_settings(vault, secret_id_file))

    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "INGEST_API_KEY" in text and "REDIS_PASS_NEXT" in text  # the names are logged
    assert "UNRELATED" not in text
    assert vault.tokens  # the token Vault issued is a secret too
    for secret in [*VAULT_SECRETS.values(), SECRET_ID, *vault.tokens]:
        assert secret not in text


# --- keeping the token alive -----------------------------------------------------------------


def test_renewer_keeps_the_token_alive_past_its_ttl(secret_id_file: Path) -> None:
    with make_vault(token_ttl=3) as vault:
        settings = vault_settings(vault, secret_id_file, VAULT_TOKEN_RENEW_THRESHOLD="2")
        client = login(settings)
        unrenewed = login(settings)
        token = client.token
        renewer = TokenRenewer(settings, client, interval=0.2).start()
        try:
            time.sleep(5)  # well past the 3 s TTL
            assert read_secrets(client, "secret/mutt")["INGEST_API_KEY"] == "vault-ingest-key"
        finally:
            renewer.stop()

        assert renewer.renewals >= 2
        assert vault.calls[RENEW_SELF] == renewer.renewals
        assert renewer.relogins == 0 and renewer.failures == 0
        assert client.token == token  # renewed, not replaced
        # Proof the TTL is real: the token nobody renewed is gone.
        with pytest.raises(VaultError, match="refused: permission denied"):
            read_secrets(unrenewed, "secret/mutt")


def test_stop_is_immediate_even_with_a_long_interval(
    vault: VaultServer, secret_id_file: Path
) -> None:
    settings = vault_settings(vault, secret_id_file)
    renewer = start_renewal(settings, login(settings))
    assert renewer.interval == 300
    assert renewer.running

    started = time.monotonic()
    renewer.stop()

    assert time.monotonic() - started < 1
    assert not renewer.running


def test_renewer_logs_in_again_when_vault_forgets_the_token(secret_id_file: Path) -> None:
    with make_vault(token_ttl=60) as vault:
        settings = vault_settings(vault, secret_id_file)
        client = login(settings)
        old_token = client.token
        received: list[dict[str, str]] = []
        renewer = TokenRenewer(settings, client, interval=0.1, on_secrets=received.append).start()
        try:
            vault.revoke_all()
            wait_for(lambda: renewer.relogins >= 1, 3, "the renewer to log in again")
            assert client.token != old_token
            assert read_secrets(client, "secret/mutt")["MOOG_API_KEY"] == "vault-moog-key"
            wait_for(lambda: received, 1, "on_secrets")
            assert received[0]["INGEST_API_KEY"] == "vault-ingest-key"
        finally:
            renewer.stop()
        assert renewer.failures >= 1  # the refused lookup


def test_renewer_survives_a_failed_relogin_and_retries(secret_id_file: Path) -> None:
    with make_vault(token_ttl=60) as vault:
        settings = vault_settings(vault, secret_id_file)
        client = login(settings)
        renewer = TokenRenewer(settings, client, interval=0.1).start()
        try:
            secret_id_file.unlink()  # the next login cannot read it
            vault.revoke_all()
            wait_for(lambda: renewer.failures >= 3, 3, "failed re-logins")
            assert renewer.relogins == 0
            assert renewer.running

            secret_id_file.write_text(SECRET_ID)
            wait_for(lambda: renewer.relogins >= 1, 3, "the renewer to log in again")
            assert client.is_authenticated()
        finally:
            renewer.stop()


def test_renewer_logs_in_again_at_the_max_ttl(secret_id_file: Path) -> None:
    # Renewals stop extending the token as it nears its max TTL; then only a new login helps.
    with make_vault(token_ttl=3, token_max_ttl=4) as vault:
        settings = vault_settings(vault, secret_id_file, VAULT_TOKEN_RENEW_THRESHOLD="2")
        client = login(settings)
        renewer = TokenRenewer(settings, client, interval=0.2).start()
        try:
            wait_for(lambda: renewer.relogins >= 1, 5, "a re-login at the max TTL")
            assert read_secrets(client, "secret/mutt")
        finally:
            renewer.stop()
        assert renewer.renewals >= 1
        assert renewer.failures == 0


def test_scoped_api_keys_come_from_vault_and_a_bad_list_is_refused(
    vault: VaultServer, secret_id_file: Path
) -> None:
    scoped = "grafana:viewer:vault-viewer-key-0123,ci:admin:vault-admin-key-0123"
    vault.set_secret("secret/mutt", {**VAULT_SECRETS, "WEBUI_API_KEYS": scoped})
    merged = overlay_secrets(vault_settings(vault, secret_id_file))
    assert merged.webui_api_keys is not None
    assert merged.webui_api_keys.get_secret_value() == scoped
    # Each key is masked in logs on its own, not only the whole list.
    assert {"vault-viewer-key-0123", "vault-admin-key-0123"} <= set(secret_values(merged))

    vault.set_secret(
        "secret/mutt", {**VAULT_SECRETS, "WEBUI_API_KEYS": "ci:root:vault-admin-key-0123"}
    )
    with pytest.raises(VaultError, match=r"^invalid value for WEBUI_API_KEYS in secret/mutt$"):
        overlay_secrets(vault_settings(vault, secret_id_file))
