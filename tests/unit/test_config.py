"""Settings: names from the quick reference, URL forms win, one clear line for a bad value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mutt_app.config import SettingsError, load_settings
from mutt_app.holdback import schedule, storms, window_counts


def test_defaults_are_the_embedded_default() -> None:
    settings = load_settings({})
    assert settings.embedded_database and settings.embedded_redis
    assert settings.database_dsn().startswith("sqlite:///")
    assert settings.database_dsn().endswith("/var/mutt.db")
    assert settings.server_port_ingestor == 8080
    assert settings.server_port_webui == 8090
    assert settings.moog_rate_limit == 50
    assert settings.required_message_fields == ("timestamp", "message", "hostname")


def test_database_url_wins_over_parts() -> None:
    settings = load_settings(
        {"DATABASE_URL": "postgresql://u@db1:5433/x", "DB_HOST": "ignored", "DB_NAME": "y"}
    )
    assert settings.database_dsn() == "postgresql+psycopg2://u@db1:5433/x"


def test_database_parts_build_a_postgres_url() -> None:
    settings = load_settings({"DB_HOST": "db.example", "DB_PORT": "6543", "DB_NAME": "mutt"})
    assert settings.database_dsn() == "postgresql+psycopg2://mutt_user@db.example:6543/mutt"
    assert not settings.embedded_database


def test_redis_url_wins_and_password_is_substituted() -> None:
    settings = load_settings({"REDIS_URL": "redis://:old@cache:6380/2", "REDIS_HOST": "ignored"})
    assert settings.redis_dsn() == "redis://:old@cache:6380/2"
    assert settings.redis_dsn("n3w/pass") == "redis://:n3w%2Fpass@cache:6380/2"


def test_redis_parts_with_tls() -> None:
    settings = load_settings({"REDIS_HOST": "cache", "REDIS_TLS_ENABLED": "true", "REDIS_DB": "3"})
    assert settings.redis_dsn() == "rediss://cache:6379/3"


def test_rotating_passwords_come_before_the_plain_one() -> None:
    settings = load_settings(
        {"REDIS_PASSWORD": "plain", "REDIS_PASS_CURRENT": "a", "REDIS_PASS_NEXT": "b"}
    )
    assert settings.redis_passwords() == ["a", "b"]
    assert load_settings({"DB_PASS": "p"}).db_passwords() == ["p"]
    assert load_settings({}).db_passwords() == [None]


def test_comma_separated_required_fields() -> None:
    settings = load_settings({"REQUIRED_MESSAGE_FIELDS": "message, hostname"})
    assert settings.required_message_fields == ("message", "hostname")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"REDIS_PORT": "sixty"}, "invalid setting REDIS_PORT='sixty': "),
        ({"SERVER_PORT_INGESTOR": "70000"}, "invalid setting SERVER_PORT_INGESTOR='70000': "),
        ({"MOOG_RATE_LIMIT": "0"}, "invalid setting MOOG_RATE_LIMIT='0': "),
        ({"LOG_LEVEL": "chatty"}, "invalid setting LOG_LEVEL='chatty'"),
        ({"LOG_JSON_ENABLED": "perhaps"}, "invalid setting LOG_JSON_ENABLED='perhaps'"),
    ],
)
def test_invalid_setting_is_one_line_naming_the_variable(environ: dict, expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    message = str(caught.value)
    assert message.startswith(expected.split(": ")[0])
    assert "\n" not in message


def test_invalid_secret_is_named_but_not_echoed() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"INGEST_API_KEY": ["not", "a", "string"]})  # type: ignore[dict-item]
    assert "INGEST_API_KEY" in str(caught.value)
    assert "not" not in str(caught.value).split(":", 1)[0]


def test_unrelated_environment_is_ignored() -> None:
    settings = load_settings({"PATH": "/bin", "HOME": "/root", "MUTT_DATA_DIR": "/tmp/m"})
    assert settings.mutt_data_dir == Path("/tmp/m")


@pytest.mark.parametrize(
    "given",
    [
        # libpq's URI form: the servers in the authority (SQLAlchemy cannot parse it as such).
        "postgresql://u@10.0.0.1:5432,10.0.0.2:5433/mutt?target_session_attrs=read-write",
        # One host item with a comma list of name:port.
        "postgresql://u@/mutt?host=10.0.0.1:5432,10.0.0.2:5433&target_session_attrs=read-write",
        # SQLAlchemy's own form: one host item per server.
        "postgresql://u@/mutt?host=10.0.0.1:5432&host=10.0.0.2:5433&target_session_attrs=read-write",
        # libpq's keyword form: hosts and ports as parallel comma lists.
        "postgresql://u@/mutt?host=10.0.0.1,10.0.0.2&port=5432,5433&target_session_attrs=read-write",
    ],
)
def test_multi_host_database_url_reaches_libpq_as_hosts_and_ports(given: str) -> None:
    from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
    from sqlalchemy.engine import make_url

    dsn = load_settings({"DATABASE_URL": given}).database_dsn()
    _, params = PGDialect_psycopg2().create_connect_args(make_url(dsn))
    assert params["host"] == "10.0.0.1,10.0.0.2"
    assert params["port"] == "5432,5433"
    assert params["target_session_attrs"] == "read-write"
    assert params["dbname"] == "mutt" and params["user"] == "u"


def test_single_host_database_url_is_left_alone() -> None:
    given = "postgresql+psycopg2://u:p%40ss@db1:5433/x?sslmode=require"
    assert load_settings({"DATABASE_URL": given}).database_dsn() == given


ROOT = Path(__file__).resolve().parents[2]


def _documented_defaults() -> list[tuple[str, str, str]]:
    """(file, setting, default) as README's configuration tables (``| `NAME` | default |``) and the
    Limits sections of README and the runbook (``` `NAME` (default) ```) state them."""
    found = []
    for name in ("README.md", "docs/runbook.md"):
        text = (ROOT / name).read_text()
        for m in re.finditer(r"^\| `([A-Z][A-Z0-9_]*)` \| `?([^|`]*?)`? \|", text, re.MULTILINE):
            found.append((name, m.group(1), m.group(2).strip()))
        limits = text.split("\n## Limits\n", 1)[1].split("\n## ", 1)[0]
        for m in re.finditer(r"`([A-Z][A-Z0-9_]*)` \(([^)]*)\)", limits):
            found.append((name, m.group(1), m.group(2).strip()))
    return found


def _limit_constants() -> dict[str, float]:
    """The limits README names that are constants in code, not settings."""
    return {
        "MAX_SKIPPED_DATES": schedule.MAX_SKIPPED_DATES,
        "MAX_WALK_SECONDS": schedule.MAX_WALK_SECONDS,
        "MAX_TEMPLATES": storms.MAX_TEMPLATES,
        "MAX_HOSTS": window_counts.MAX_HOSTS,
    }


def test_readme_and_runbook_state_the_defaults_config_has() -> None:
    defaults = load_settings({})
    constants = _limit_constants()
    checked, wrong = 0, []
    for name, setting, stated in _documented_defaults():
        field = setting.lower()
        if setting in constants:
            checked += 1
            first = re.match(r"[0-9][0-9,.]*", stated)
            if first is None or float(first.group().replace(",", "")) != constants[setting]:
                wrong.append(
                    f"{name}: {setting} documented {stated!r}, code has {constants[setting]}"
                )
            continue
        if field not in type(defaults).model_fields:
            wrong.append(f"{name}: {setting} is neither a setting nor a known limit constant")
            continue
        actual = getattr(defaults, field)
        plain = stated.replace(",", "").strip("`")
        if plain == "unset" or not re.fullmatch(r"-?[0-9.]+|true|false|[a-z_]+", plain):
            continue  # prose ("1 with Sentinel, else 0"), or nothing set
        expected = str(actual).lower() if isinstance(actual, bool) else str(actual)
        checked += 1
        if plain != expected and not (plain.replace(".", "").isdigit() and float(plain) == actual):
            wrong.append(f"{name}: {setting} documented {stated!r}, config has {actual!r}")
    assert checked >= 15, checked  # the tables and the Limits sections were found
    assert wrong == []


def test_env_example_values_are_the_defaults_where_it_does_not_say_otherwise() -> None:
    # A commented-out line shows the default; a line left in sets what the deploy kit needs (the
    # trusted proxies behind its nginx), and its comment says so.
    defaults = load_settings({})
    text = (ROOT / "deploy" / "mutt.env.example").read_text()
    wrong = []
    for m in re.finditer(r"^#([A-Z][A-Z0-9_]*)=([0-9][0-9.]*)$", text, re.MULTILINE):
        field = m.group(1).lower()
        if field in type(defaults).model_fields:
            actual = getattr(defaults, field)
            if actual is not None and float(m.group(2)) != float(actual):
                wrong.append(f"{m.group(1)}={m.group(2)}, config has {actual!r}")
    assert wrong == []


def test_ingest_tls_certificate_and_key_go_together_and_a_client_ca_needs_them() -> None:
    paths = {"INGEST_TLS_CERT_PATH": "/c/server.crt", "INGEST_TLS_KEY_PATH": "/c/server.key"}
    settings = load_settings({**paths, "INGEST_TLS_CLIENT_CA_PATH": "/c/ca.pem"})
    assert settings.ingest_tls and str(settings.ingest_tls_client_ca_path) == "/c/ca.pem"
    assert not load_settings({"INGEST_TLS_CERT_PATH": "", "INGEST_TLS_KEY_PATH": ""}).ingest_tls
    for env in (
        {"INGEST_TLS_CERT_PATH": "/c/server.crt"},
        {"INGEST_TLS_KEY_PATH": "/c/server.key"},
        {"INGEST_TLS_CLIENT_CA_PATH": "/c/ca.pem"},
    ):
        with pytest.raises(SettingsError, match="INGEST_TLS_"):
            load_settings(env)
