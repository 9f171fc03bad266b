"""Vault: AppRole login, KV v2 secrets laid over the settings, a token kept alive, and passwords
rotated through it.

Against a real OpenBao server (``bao server -dev``, tests/openbao.py), the open-source fork of Vault
with the same API, through hvac; nothing mocked. What MUTT asked is counted from the server's audit
log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from mutt_app.config import Settings, load_settings
from mutt_app.logs import secret_values
from mutt_app.rotation import redis_client
from mutt_app.vault import (
    TokenRenewer,
    VaultError,
    login,
    overlay_secrets,
    read_secrets,
    start_renewal,
)
from tests.openbao import OpenBao, Role
from tests.services import RedisServer, free_port, wait_for

VAULT_SECRETS = {
    "INGEST_API_KEY": "vault-ingest-key",
    "MOOG_API_KEY": "vault-moog-key",
    "REDIS_PASS_CURRENT": "vault-redis-current",
    "REDIS_PASS_NEXT": "vault-redis-next",
    "DB_PASS_NEXT": "vault-db-next",
    "UNRELATED": "not-a-mutt-setting",
}
LOGIN = "auth/approle/login"
KV_MUTT = "secret/data/mutt"
RENEW_SELF = "auth/token/renew-self"


@pytest.fixture(scope="module")
def bao() -> Iterator[OpenBao]:
    with OpenBao() as server:
        yield server


@pytest.fixture
def role(bao: OpenBao) -> Role:
    """This test's AppRole role (tokens for an hour), with secret/mutt as VAULT_SECRETS."""
    bao.put_secret("secret/mutt", VAULT_SECRETS)
    return bao.role()


@pytest.fixture
def secret_id_file(tmp_path: Path, role: Role) -> Path:
    path = tmp_path / "vault_secret_id"
    path.write_text(f"  {role.secret_id}\n")  # as written by `echo`, with stray whitespace
    return path


def vault_settings(bao: OpenBao, role: Role, secret_id_file: Path, **extra: str) -> Settings:
    return load_settings(
        {
            "VAULT_ADDR": bao.url,
            "VAULT_ROLE_ID": role.role_id,
            "VAULT_SECRET_ID_FILE": str(secret_id_file),
            **extra,
        }
    )


def short_lived(bao: OpenBao, tmp_path: Path, **ttls: str) -> tuple[Role, Settings]:
    """A role whose tokens live ``token_ttl`` (and at most ``token_max_ttl``), and its settings."""
    role = bao.role(**ttls)
    secret_id_file = tmp_path / "short_secret_id"
    secret_id_file.write_text(role.secret_id)
    return role, vault_settings(bao, role, secret_id_file, VAULT_TOKEN_RENEW_THRESHOLD="2")


# --- login -----------------------------------------------------------------------------------


def test_approle_login_gives_an_authenticated_client(
    bao: OpenBao, role: Role, secret_id_file: Path
) -> None:
    logins = bao.requests(LOGIN)

    client = login(vault_settings(bao, role, secret_id_file))

    assert client.is_authenticated()
    assert bao.token_valid(client.token)
    assert bao.requests(LOGIN) == logins + 1
    info = bao.root().auth.token.lookup(client.token)["data"]
    assert info["meta"]["role_name"] == role.name and "mutt" in info["policies"]


def test_wrong_secret_id_is_refused_with_a_clear_message(
    bao: OpenBao, role: Role, secret_id_file: Path
) -> None:
    secret_id_file.write_text("not-the-secret-id\n")

    with pytest.raises(VaultError) as caught:
        login(vault_settings(bao, role, secret_id_file))

    message = str(caught.value)
    assert message == f"AppRole login refused by {bao.url}: invalid role or secret ID"
    assert "not-the-secret-id" not in message


def test_missing_secret_id_file_names_the_file(bao: OpenBao, role: Role, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "vault_secret_id"
    logins = bao.requests(LOGIN)

    with pytest.raises(VaultError, match="cannot read secret id file") as caught:
        login(vault_settings(bao, role, missing))

    assert str(missing) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert bao.requests(LOGIN) == logins


def test_unreachable_vault_is_a_vault_error(role: Role, secret_id_file: Path) -> None:
    settings = load_settings(
        {
            "VAULT_ADDR": f"http://127.0.0.1:{free_port()}",  # nothing listens there
            "VAULT_ROLE_ID": role.role_id,
            "VAULT_SECRET_ID_FILE": str(secret_id_file),
        }
    )
    with pytest.raises(VaultError, match=r"AppRole login at .* failed: connection failed"):
        login(settings)


# --- reading and overlaying secrets --------------------------------------------------------------


def test_read_secrets_splits_the_mount_from_the_path(
    bao: OpenBao, role: Role, secret_id_file: Path
) -> None:
    bao.put_secret("kv/apps/mutt", {"INGEST_API_KEY": "k", "number": 7})
    client = login(vault_settings(bao, role, secret_id_file))
    reads = bao.requests("kv/data/apps/mutt", "read")

    assert read_secrets(client, "kv/apps/mutt") == {"INGEST_API_KEY": "k", "number": "7"}
    assert bao.requests("kv/data/apps/mutt", "read") == reads + 1


def test_the_latest_version_is_read(bao: OpenBao, role: Role, secret_id_file: Path) -> None:
    client = login(vault_settings(bao, role, secret_id_file))
    bao.put_secret("secret/mutt", {**VAULT_SECRETS, "INGEST_API_KEY": "version-2"})
    assert read_secrets(client, "secret/mutt")["INGEST_API_KEY"] == "version-2"
    versions = bao.root().secrets.kv.v2.read_secret_metadata("mutt", mount_point="secret")
    assert versions["data"]["current_version"] >= 2


def test_absent_secret_path_is_a_clear_error(
    bao: OpenBao, role: Role, secret_id_file: Path
) -> None:
    client = login(vault_settings(bao, role, secret_id_file))

    with pytest.raises(VaultError, match=r"^no secrets at secret/other$"):
        read_secrets(client, "secret/other")
    with pytest.raises(VaultError, match="must be <mount>/<path>"):
        read_secrets(client, "secret")


def test_a_path_outside_the_policy_is_refused(
    bao: OpenBao, role: Role, secret_id_file: Path
) -> None:
    # The mutt policy reads secret/ and kv/apps/; another team's secret is none of its business.
    bao.put_secret("kv/billing/db", {"DB_PASS_CURRENT": "billing-secret"})
    client = login(vault_settings(bao, role, secret_id_file))
    with pytest.raises(VaultError, match=r"^reading kv/billing/db refused: permission denied$"):
        read_secrets(client, "kv/billing/db")


def test_overlay_replaces_env_values_and_leaves_absent_keys_alone(
    bao: OpenBao, role: Role, secret_id_file: Path
) -> None:
    settings = vault_settings(
        bao,
        role,
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
    assert merged.vault_addr == bao.url
    # The input is not modified (frozen settings are shared).
    assert value(settings.ingest_api_key) == "env-ingest-key"
    assert settings.redis_pass_current is None


def test_overlay_uses_a_given_client_without_logging_in_again(
    bao: OpenBao, role: Role, secret_id_file: Path
) -> None:
    settings = vault_settings(bao, role, secret_id_file)
    client = login(settings)
    logins, reads = bao.requests(LOGIN), bao.requests(KV_MUTT, "read")

    merged = overlay_secrets(settings, client=client)

    assert bao.requests(LOGIN) == logins
    assert bao.requests(KV_MUTT, "read") == reads + 1
    assert merged.moog_api_key is not None


def test_no_secret_value_reaches_the_logs(
    bao: OpenBao, role: Role, secret_id_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, hvac's and urllib3's included
    client = login(vault_settings(bao, role, secret_id_file))

    overlay_secrets(vault_settings(bao, role, secret_id_file), client=client)

    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "INGEST_API_KEY" in text and "REDIS_PASS_NEXT" in text  # the names are logged
    assert "UNRELATED" not in text
    # The token Vault issued is a secret too.
    for secret in [*VAULT_SECRETS.values(), role.secret_id, client.token]:
        assert secret not in text


def test_scoped_api_keys_come_from_vault_and_a_bad_list_is_refused(
    bao: OpenBao, role: Role, secret_id_file: Path
) -> None:
    scoped = "grafana:viewer:vault-viewer-key-0123,ci:admin:vault-admin-key-0123"
    bao.put_secret("secret/mutt", {**VAULT_SECRETS, "WEBUI_API_KEYS": scoped})
    merged = overlay_secrets(vault_settings(bao, role, secret_id_file))
    assert merged.webui_api_keys is not None
    assert merged.webui_api_keys.get_secret_value() == scoped
    # Each key is masked in logs on its own, not only the whole list.
    assert {"vault-viewer-key-0123", "vault-admin-key-0123"} <= set(secret_values(merged))

    bao.put_secret(
        "secret/mutt", {**VAULT_SECRETS, "WEBUI_API_KEYS": "ci:root:vault-admin-key-0123"}
    )
    with pytest.raises(VaultError, match=r"^invalid value for WEBUI_API_KEYS in secret/mutt$"):
        overlay_secrets(vault_settings(bao, role, secret_id_file))


# --- keeping the token alive -----------------------------------------------------------------


def test_renewer_keeps_the_token_alive_past_its_ttl(bao: OpenBao, tmp_path: Path) -> None:
    bao.put_secret("secret/mutt", VAULT_SECRETS)
    _, settings = short_lived(bao, tmp_path, token_ttl="3s", token_max_ttl="1h")
    client = login(settings)
    unrenewed = login(settings)
    token = client.token
    renewals = bao.requests(RENEW_SELF)
    renewer = TokenRenewer(settings, client, interval=0.2).start()
    try:
        time.sleep(5)  # well past the 3 s TTL
        assert read_secrets(client, "secret/mutt")["INGEST_API_KEY"] == "vault-ingest-key"
    finally:
        renewer.stop()

    assert renewer.renewals >= 2
    assert bao.requests(RENEW_SELF) - renewals == renewer.renewals
    assert renewer.relogins == 0 and renewer.failures == 0
    assert client.token == token  # renewed, not replaced
    # Proof the TTL is real: the token nobody renewed is gone.
    assert not bao.token_valid(unrenewed.token)
    with pytest.raises(VaultError, match=r"^reading secret/mutt refused: permission denied$"):
        read_secrets(unrenewed, "secret/mutt")


def test_stop_is_immediate_even_with_a_long_interval(
    bao: OpenBao, role: Role, secret_id_file: Path
) -> None:
    settings = vault_settings(bao, role, secret_id_file)
    renewer = start_renewal(settings, login(settings))
    assert renewer.interval == 300
    assert renewer.running

    started = time.monotonic()
    renewer.stop()

    assert time.monotonic() - started < 1
    assert not renewer.running


def test_renewer_logs_in_again_when_the_token_is_revoked(
    bao: OpenBao, role: Role, secret_id_file: Path
) -> None:
    settings = vault_settings(bao, role, secret_id_file)
    client = login(settings)
    old_token = client.token
    received: list[dict[str, str]] = []
    renewer = TokenRenewer(settings, client, interval=0.1, on_secrets=received.append).start()
    try:
        bao.revoke(old_token)
        wait_for(lambda: renewer.relogins >= 1, 5, "the renewer to log in again")
        assert client.token != old_token
        assert read_secrets(client, "secret/mutt")["MOOG_API_KEY"] == "vault-moog-key"
        wait_for(lambda: received, 2, "on_secrets")
        assert received[0]["INGEST_API_KEY"] == "vault-ingest-key"
    finally:
        renewer.stop()
    assert renewer.failures >= 1  # the refused lookup
    assert not bao.token_valid(old_token)


def test_renewer_survives_a_failed_relogin_and_retries(
    bao: OpenBao, role: Role, secret_id_file: Path
) -> None:
    settings = vault_settings(bao, role, secret_id_file)
    client = login(settings)
    renewer = TokenRenewer(settings, client, interval=0.1).start()
    try:
        secret_id_file.unlink()  # the next login cannot read it
        bao.revoke(client.token)
        wait_for(lambda: renewer.failures >= 3, 5, "failed re-logins")
        assert renewer.relogins == 0
        assert renewer.running

        secret_id_file.write_text(role.secret_id)
        wait_for(lambda: renewer.relogins >= 1, 5, "the renewer to log in again")
        assert client.is_authenticated()
    finally:
        renewer.stop()


def test_a_sealed_vault_is_a_clear_error_and_the_renewer_outlives_it(
    bao: OpenBao, role: Role, secret_id_file: Path
) -> None:
    settings = vault_settings(bao, role, secret_id_file)
    client = login(settings)
    renewer = TokenRenewer(settings, client, interval=0.1).start()
    bao.seal()
    try:
        with pytest.raises(VaultError, match=r"^AppRole login at .* failed: .*sealed") as caught:
            login(settings)
        assert "\n" not in str(caught.value)
        with pytest.raises(VaultError, match=r"^reading secret/mutt failed: .*sealed") as caught:
            read_secrets(client, "secret/mutt")
        assert "\n" not in str(caught.value)
        wait_for(lambda: renewer.failures >= 2, 5, "failed checks while sealed")
        assert renewer.running
    finally:
        bao.unseal()
    try:
        # Unsealed, the renewer gets a working token again (its own, or a new login).
        wait_for(lambda: client.is_authenticated(), 5, "a working token after the unseal")
        assert read_secrets(client, "secret/mutt")["INGEST_API_KEY"] == "vault-ingest-key"
    finally:
        renewer.stop()


def test_renewer_logs_in_again_at_the_max_ttl(bao: OpenBao, tmp_path: Path) -> None:
    # Renewals stop extending the token as it nears its max TTL; then only a new login helps.
    bao.put_secret("secret/mutt", VAULT_SECRETS)
    _, settings = short_lived(bao, tmp_path, token_ttl="3s", token_max_ttl="4s")
    client = login(settings)
    first = client.token
    renewer = TokenRenewer(settings, client, interval=0.2).start()
    try:
        wait_for(lambda: renewer.relogins >= 1, 8, "a re-login at the max TTL")
        assert read_secrets(client, "secret/mutt")
    finally:
        renewer.stop()
    assert renewer.renewals >= 1
    assert renewer.failures == 0
    assert client.token != first


# --- rotating passwords through Vault ---------------------------------------------------------


OLD, NEW = "rotate-old-pass", "rotate-new-pass"


def _switch_redis_password(server: RedisServer, password: str) -> None:
    """The server side of a rotation: a new requirepass, and every client made to log in again."""
    admin = server.client()
    try:
        admin.config_set("requirepass", password)
        admin.execute_command("CLIENT", "KILL", "TYPE", "normal")
    finally:
        admin.close()
    server.password = password


def test_a_redis_password_rotation_driven_through_vault(
    bao: OpenBao, role: Role, secret_id_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(password=OLD).start()
    try:
        base = vault_settings(
            bao, role, secret_id_file, REDIS_URL=f"redis://127.0.0.1:{server.port}/0"
        )
        vault = login(base)
        # Before: Vault holds only the current password.
        bao.put_secret("secret/mutt", {"REDIS_PASS_CURRENT": OLD})
        before = overlay_secrets(base, client=vault)
        assert before.redis_passwords() == [OLD]

        # The operator starts the rotation in Vault (a new KV version with both passwords), and a
        # worker that reads it builds its long-lived client; then Redis switches.
        bao.put_secret("secret/mutt", {"REDIS_PASS_CURRENT": OLD, "REDIS_PASS_NEXT": NEW})
        during = overlay_secrets(base, client=vault)
        assert during.redis_passwords() == [OLD, NEW]
        worker = redis_client(during)
        stale = redis_client(before)
        caplog.set_level(logging.DEBUG)
        try:
            worker.set("k", "v")
            _switch_redis_password(server, NEW)
            assert worker.get("k") == b"v"  # reconnected with the next password
            assert any("next password" in r.getMessage() for r in caplog.records)
            with pytest.raises(redis.AuthenticationError):
                stale.get("k")  # what happens to a process that never read the rotation
        finally:
            worker.close()
            stale.close()

        # The operator completes it: the next password becomes the current one.
        bao.put_secret("secret/mutt", {"REDIS_PASS_CURRENT": NEW})
        after = overlay_secrets(base, client=vault)
        assert after.redis_passwords() == [NEW]
        fresh = redis_client(after)
        try:
            assert fresh.get("k") == b"v"
        finally:
            fresh.close()
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert OLD not in logged and NEW not in logged
    finally:
        server.stop()
