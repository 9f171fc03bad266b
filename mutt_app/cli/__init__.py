"""The ``mutt`` command: run MUTT, manage its database, and operate it."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta, tzinfo

import click
from sqlalchemy import Engine

from mutt_app import __version__
from mutt_app.config import Settings, SettingsError, load_settings
from mutt_app.devtools.launcher import run
from mutt_app.devtools.moog_sink import moog_sink
from mutt_app.devtools.send import send
from mutt_app.logs import configure_logging


class Context:
    """What every subcommand shares: the settings (read once) and, lazily, an engine."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from mutt_app.db.engine import make_engine

            self._engine = make_engine(self.settings)
        return self._engine


pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mutt")
@click.pass_context
def main(ctx: click.Context) -> None:
    """MUTT, the Multi-Use Telemetry Tool."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if settings.vault_addr:
        from mutt_app.vault import VaultError, overlay_secrets

        try:
            settings = overlay_secrets(settings)
        except VaultError as exc:
            raise click.ClickException(f"vault: {exc}") from None
    configure_logging(settings, service="mutt-cli")
    ctx.obj = Context(settings)


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    add_help_option=False,
)
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
@pass_context
def flower(obj: Context, flower_args: tuple[str, ...]) -> None:
    """Start Flower (``celery -A mutt_app flower FLOWER_ARGS...``), unless its login is a placeholder."""
    from mutt_app.cli.flower import flower_argv, login_problem

    login = obj.settings.flower_basic_auth
    problem = login_problem(login.get_secret_value() if login else None)
    if problem is not None:
        raise click.ClickException(f"Flower not started: {problem}")
    argv = flower_argv(flower_args)
    os.execv(argv[0], argv)


main.add_command(run)
main.add_command(moog_sink)
main.add_command(send)


# --- mutt db ---------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Migrate, seed and partition the database."""


@db.command()
@click.option("--revision", default="head", show_default=True)
@pass_context
def upgrade(obj: Context, revision: str) -> None:
    """Apply migrations (creates the schema on a new database)."""
    from mutt_app.db.engine import current_revision
    from mutt_app.db.engine import upgrade as run_upgrade

    run_upgrade(obj.engine, revision)
    click.echo(f"database at revision {current_revision(obj.engine)} ({_where(obj)})")


@db.command()
@click.option("--revision", default="base", show_default=True, help="'base' drops everything.")
@click.confirmation_option(prompt="This drops MUTT's tables and their data. Continue?")
@pass_context
def downgrade(obj: Context, revision: str) -> None:
    """Revert migrations."""
    from mutt_app.db.engine import current_revision
    from mutt_app.db.engine import downgrade as run_downgrade

    run_downgrade(obj.engine, revision)
    click.echo(f"database at revision {current_revision(obj.engine) or 'base'} ({_where(obj)})")


@db.command()
@pass_context
def seed(obj: Context) -> None:
    """Load the default catch-all rule and the example rules (idempotent)."""
    from mutt_app.commands.changes import audited_change
    from mutt_app.commands.seed import SEED_RULES, seed_rules
    from mutt_app.db.engine import session_factory

    with audited_change(
        session_factory(obj.engine),
        _workers_redis(obj),
        changed_by="mutt db seed",
        reason="seed rules",
    ) as change:
        added = seed_rules(change)
    click.echo(f"seed rules: {len(added)} added, {len(SEED_RULES) - len(added)} already present")


@db.command()
@click.option(
    "--months-ahead",
    type=click.IntRange(0, 120),
    default=None,
    help="Months after the current one [default: PARTITION_PRECREATE_MONTHS].",
)
@click.option(
    "--from",
    "first",
    type=click.DateTime(["%Y-%m", "%Y-%m-%d"]),
    default=None,
    help="First month (YYYY-MM) [default: the current month].",
)
@click.option(
    "--drain-default/--keep-default",
    default=True,
    show_default=True,
    help="Also create the months that have rows in the default partition, moving them out.",
)
@pass_context
def partitions(
    obj: Context, months_ahead: int | None, first: datetime | None, drain_default: bool
) -> None:
    """Create monthly event-audit partitions (PostgreSQL; idempotent)."""
    from mutt_app.db.engine import is_postgres
    from mutt_app.db.partitions import ensure_partitions

    if not is_postgres(obj.engine):
        click.echo("this database has no partitions (SQLite): nothing to do")
        return
    ahead = obj.settings.partition_precreate_months if months_ahead is None else months_ahead
    start = (first or datetime.now(UTC)).date()
    results = ensure_partitions(obj.engine, start, ahead, drain_default=drain_default)
    for result in results:
        status = "created" if result.created else "exists"
        moved = f", moved {result.moved_rows} rows from default" if result.moved_rows else ""
        click.echo(f"{result.name}: {status}{moved}")
    created = sum(r.created for r in results)
    click.echo(f"{len(results)} partitions checked, {created} created")


@db.command()
@pass_context
def current(obj: Context) -> None:
    """Show the database's migration revision."""
    from mutt_app.db.engine import current_revision

    click.echo(f"{current_revision(obj.engine) or 'base'} ({_where(obj)})")


# --- mutt dlq ----------------------------------------------------------------------------------

_TASKS = click.Choice(["classify_event", "forward_to_moog"])


def _age(value: str | None) -> timedelta | None:
    """'90s', '15m', '2h', '7d' -> timedelta."""
    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    try:
        return timedelta(seconds=float(value[:-1]) * units[value[-1]])
    except (KeyError, ValueError, IndexError):
        raise click.BadParameter(f"{value!r}: use a number with s, m, h or d (e.g. 15m)") from None


def _dlq_filters(func):  # type: ignore[no-untyped-def]
    func = click.option("--poison", is_flag=True, help="The poison store instead of the DLQ.")(func)
    func = click.option("--task", type=_TASKS, help="Only this task's items.")(func)
    func = click.option(
        "--older-than", help="Only items that last failed before this age (15m, 2d)."
    )(func)
    return func


@main.group()
def dlq() -> None:
    """Inspect, replay and purge dead letters and poison."""


@dlq.command("list")
@_dlq_filters
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@pass_context
def dlq_list(
    obj: Context, poison: bool, task: str | None, older_than: str | None, limit: int
) -> None:
    """List items, oldest first, with a total."""
    from mutt_app.db.engine import session_factory
    from mutt_app.forwarding import deadletters

    age = _age(older_than)
    with session_factory(obj.engine)() as session:
        total = deadletters.count(session, poison=poison, task_name=task, older_than=age)
        items = deadletters.find(
            session, poison=poison, task_name=task, older_than=age, limit=limit
        )
        for item in items:
            click.echo(
                f"{item.id:>8}  {item.task_name:<21} {item.last_failed_at:%Y-%m-%d %H:%M:%S}  "
                f"attempts={item.attempts} replays={item.replays}  "
                f"{item.error_type}: {item.error_message[:80]}"
            )
    store = "poison" if poison else "dead letters"
    click.echo(f"{total} {store}" + (f" (showing {len(items)})" if total > len(items) else ""))


@dlq.command("show")
@click.argument("item_id", type=int)
@click.option("--poison", is_flag=True, help="The poison store instead of the DLQ.")
@pass_context
def dlq_show(obj: Context, item_id: int, poison: bool) -> None:
    """Show one item in full (payload as JSON)."""
    import json

    from mutt_app.db.engine import session_factory
    from mutt_app.db.models import DeadLetter, PoisonLetter

    with session_factory(obj.engine)() as session:
        item = session.get(PoisonLetter if poison else DeadLetter, item_id)
        if item is None:
            raise click.ClickException(f"no {'poison item' if poison else 'dead letter'} {item_id}")
        fields = {c.name: getattr(item, c.key) for c in item.__table__.columns}
    click.echo(json.dumps(fields, indent=2, default=str))


@dlq.command("replay")
@click.argument("item_ids", type=int, nargs=-1)
@_dlq_filters
@click.option("--all", "everything", is_flag=True, help="Every item matching the filters.")
@pass_context
def dlq_replay(
    obj: Context,
    item_ids: tuple[int, ...],
    poison: bool,
    task: str | None,
    older_than: str | None,
    everything: bool,
) -> None:
    """Publish items again now (by id, or --all matching the filters) and remove them."""

    from mutt_app.db.engine import session_factory
    from mutt_app.db.models import DeadLetter, PoisonLetter
    from mutt_app.forwarding import deadletters
    from mutt_app.runtime import Runtime

    if not item_ids and not everything:
        raise click.UsageError("name item ids, or --all")
    model = PoisonLetter if poison else DeadLetter
    app = Runtime(obj.settings).celery
    replayed = skipped = 0
    with session_factory(obj.engine).begin() as session:
        if item_ids:
            items = [i for i in (session.get(model, n) for n in item_ids) if i is not None]
            skipped += len(item_ids) - len(items)
        else:
            items = deadletters.find(
                session, poison=poison, task_name=task, older_than=_age(older_than), limit=None
            )
        for item in items:
            if deadletters.replay(session, app, item) is None:
                click.echo(f"{item.id}: payload cannot be replayed; left in place", err=True)
                skipped += 1
                continue
            replayed += 1
    click.echo(f"replayed {replayed}, skipped {skipped}")


@dlq.command("purge")
@click.argument("item_ids", type=int, nargs=-1)
@_dlq_filters
@click.option("--all", "everything", is_flag=True, help="Every item matching the filters.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def dlq_purge(
    obj: Context,
    item_ids: tuple[int, ...],
    poison: bool,
    task: str | None,
    older_than: str | None,
    everything: bool,
    yes: bool,
) -> None:
    """Delete items for good (by id, or --all matching the filters)."""
    from sqlalchemy import delete

    from mutt_app.db.engine import session_factory
    from mutt_app.db.models import DeadLetter, PoisonLetter
    from mutt_app.forwarding import deadletters

    if not item_ids and not everything:
        raise click.UsageError("name item ids, or --all")
    model = PoisonLetter if poison else DeadLetter
    with session_factory(obj.engine).begin() as session:
        if item_ids:
            ids = list(item_ids)
        else:
            found = deadletters.find(
                session, poison=poison, task_name=task, older_than=_age(older_than), limit=None
            )
            ids = [item.id for item in found]
        if ids and not yes:
            click.confirm(f"Delete {len(ids)} items for good?", abort=True)
        deleted = session.execute(delete(model).where(model.id.in_(ids))).rowcount if ids else 0
    click.echo(f"purged {deleted}")


# --- mutt retention -----------------------------------------------------------------------------


@main.group()
def retention() -> None:
    """Archive and remove what is past its retention (event audit, dead letters, poison)."""


@retention.command("run")
@click.option(
    "--dry-run", is_flag=True, help="Show what would be archived and removed; change nothing."
)
@pass_context
def retention_run(obj: Context, dry_run: bool) -> None:
    """Archive (gzip JSON lines + manifest under ARCHIVE_DIR), verify, then drop or delete."""
    from mutt_app.db import retention as retention_mod

    settings = obj.settings
    if dry_run:
        found = retention_mod.plan(obj.engine, settings)
        click.echo(
            f"dry run ({found.database}): nothing is changed; archives would go to "
            f"{settings.archive_path}"
        )
        click.echo(f"event audit older than {found.event_cutoff:%Y-%m-%d %H:%M} UTC:")
        for item in found.partitions:
            state = " (retiring: a killed run detached it)" if item.retiring else ""
            click.echo(f"  partition {item.table}: {item.rows} rows{state}")
        if found.database == "postgresql" and not found.partitions:
            click.echo("  no partition wholly past retention")
        if found.default_partition_rows:
            click.echo(
                f"  default partition: {found.default_partition_rows} rows of past months "
                "(moved into their month's partition, then archived)"
            )
        for table, rows in found.rows.items():
            click.echo(f"{table} older than {found.cutoffs[table]:%Y-%m-%d %H:%M} UTC: {rows} rows")
        click.echo("config_audit_log: kept (never deleted)")
        return
    try:
        report = retention_mod.run(obj.engine, settings, progress=click.echo)
    except retention_mod.RetentionBusy as exc:
        raise click.ClickException(str(exc)) from None
    archived = ", ".join(f"{t} {n}" for t, n in report.rows_archived.items()) or "nothing"
    click.echo(
        f"retention done: {len(report.partitions_dropped)} partitions dropped; rows archived: "
        f"{archived}; {len(report.archives)} archives in {settings.archive_path}"
    )
    if report.failures:
        for failure in report.failures:
            click.echo(f"failed: {failure}", err=True)
        raise click.ClickException(
            f"{len(report.failures)} retention steps failed; their data is kept"
        )


# --- mutt config ---------------------------------------------------------------------------------


@main.group("config")
def config_group() -> None:
    """Read and change operational settings at runtime (Redis-backed, no restart)."""


def _dynamic(obj: Context):  # type: ignore[no-untyped-def]
    from mutt_app.dynamic_config import DynamicConfig
    from mutt_app.rotation import redis_client

    return DynamicConfig(redis_client(obj.settings), obj.settings, cache_ttl=0)


@config_group.command("list")
@pass_context
def config_list(obj: Context) -> None:
    """Every dynamic setting, its value, and whether it is overridden."""
    for name, entry in _dynamic(obj).get_all().items():
        mark = "*" if entry["overridden"] else " "
        click.echo(f"{mark} {name:<32} {entry['value']!s:<10} {entry['help']}")
    click.echo("(* = set at runtime; others are the defaults from the environment)")


@config_group.command("get")
@click.argument("name")
@pass_context
def config_get(obj: Context, name: str) -> None:
    """Print one setting's current value."""
    try:
        click.echo(_dynamic(obj).get(name))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@config_group.command("set")
@click.argument("name")
@click.argument("value")
@click.option("--reason", help="Why (kept in the configuration audit).")
@pass_context
def config_set(obj: Context, name: str, value: str, reason: str | None) -> None:
    """Change a setting for every process within seconds."""
    import getpass

    from mutt_app.db.engine import session_factory
    from mutt_app.dynamic_config import parse_value, set_audited

    config = _dynamic(obj)
    try:
        new = parse_value(name, value)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    with session_factory(obj.engine).begin() as session:
        old = set_audited(
            config, session, {name: new}, changed_by=f"cli:{getpass.getuser()}", reason=reason
        )[name]
    click.echo(f"{name}: {old} -> {new}")


# --- mutt users ----------------------------------------------------------------------------------


@main.group()
def users() -> None:
    """Manage the web UI's accounts (there is no default account)."""


def _cli_user() -> str:
    import getpass

    return f"cli:{getpass.getuser()}"


def _read_password(password_stdin: bool) -> str:
    """The new password: the first line of standard input, or asked twice without echo."""
    if password_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise click.ClickException("no password on standard input")
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


_ROLE = click.Choice(["viewer", "operator", "admin"])
_password_stdin = click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
_reason = click.option("--reason", help="Why (kept in the configuration audit).")


def _account_change(obj: Context, change):  # type: ignore[no-untyped-def]
    """Run ``change(session)`` in one transaction; an AccountError becomes a one-line error."""
    from mutt_app.commands.users import AccountError
    from mutt_app.db.engine import session_factory

    try:
        with session_factory(obj.engine).begin() as session:
            return change(session)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None


@users.command("create")
@click.argument("username")
@click.option("--role", type=_ROLE, default="viewer", show_default=True)
@_password_stdin
@_reason
@pass_context
def users_create(
    obj: Context, username: str, role: str, password_stdin: bool, reason: str | None
) -> None:
    """Create an account (the password is asked for twice, or read with --password-stdin)."""
    from mutt_app.commands import users as accounts

    password = _read_password(password_stdin)
    user = _account_change(
        obj,
        lambda session: accounts.create_user(
            session, username, password, role, changed_by=_cli_user(), reason=reason
        ),
    )
    click.echo(f"user {user.username} created with role {user.role}")


@users.command("set-password")
@click.argument("username")
@_password_stdin
@_reason
@pass_context
def users_set_password(
    obj: Context, username: str, password_stdin: bool, reason: str | None
) -> None:
    """Set an account's password (ending the account's web sessions)."""
    from mutt_app.commands import users as accounts

    password = _read_password(password_stdin)
    _account_change(
        obj,
        lambda session: accounts.set_password(
            session, username, password, changed_by=_cli_user(), reason=reason
        ),
    )
    click.echo(f"password of {username} changed")


@users.command("set-role")
@click.argument("username")
@click.argument("role", type=_ROLE)
@_reason
@pass_context
def users_set_role(obj: Context, username: str, role: str, reason: str | None) -> None:
    """Give an account another role (ending the account's web sessions)."""
    from mutt_app.commands import users as accounts

    _user, changed = _account_change(
        obj,
        lambda session: accounts.set_role(
            session, username, role, changed_by=_cli_user(), reason=reason
        ),
    )
    click.echo(f"{username} is now {role}" if changed else f"{username} already is {role}")


@users.command("disable")
@click.argument("username")
@_reason
@pass_context
def users_disable(obj: Context, username: str, reason: str | None) -> None:
    """Disable an account: it cannot log in, and its web sessions end at once."""
    _set_active(obj, username, False, reason)


@users.command("enable")
@click.argument("username")
@_reason
@pass_context
def users_enable(obj: Context, username: str, reason: str | None) -> None:
    """Enable a disabled account again."""
    _set_active(obj, username, True, reason)


def _set_active(obj: Context, username: str, active: bool, reason: str | None) -> None:
    from mutt_app.commands import users as accounts

    _user, changed = _account_change(
        obj,
        lambda session: accounts.set_active(
            session, username, active, changed_by=_cli_user(), reason=reason
        ),
    )
    state = "enabled" if active else "disabled"
    click.echo(f"{username} {state}" if changed else f"{username} already is {state}")


@users.command("list")
@pass_context
def users_list(obj: Context) -> None:
    """Every account: role, state and last log-in."""
    from mutt_app.commands import users as accounts
    from mutt_app.db.engine import session_factory

    with session_factory(obj.engine)() as session:
        rows = accounts.list_users(session)
    if not rows:
        click.echo("no users (create one with: mutt users create NAME --role admin)")
        return
    for user in rows:
        state = "active" if user.is_active else "disabled"
        last = user.last_login_at.isoformat(timespec="seconds") if user.last_login_at else "never"
        click.echo(f"{user.username:<24} {user.role:<9} {state:<9} last login {last}")


# --- mutt rules / dev-hosts / teams: audited changes -------------------------------------------

_change_reason = click.option(
    "--reason", required=True, help="Why (kept in the configuration audit, as for every change)."
)


def _workers_redis(obj: Context):  # type: ignore[no-untyped-def]
    """The Redis whose rules version tells workers of a change; None on the embedded default, whose
    Redis ``mutt run`` starts on a port of its own (its workers reload every CACHE_RELOAD_INTERVAL).
    """
    if obj.settings.embedded_redis:
        return None
    from mutt_app.rotation import redis_client

    return redis_client(obj.settings, socket_timeout=2, socket_connect_timeout=2)


def _audited(obj: Context, reason: str):  # type: ignore[no-untyped-def]
    """One audited change by the CLI's user (:func:`mutt_app.commands.changes.audited_change`)."""
    from mutt_app.commands.changes import audited_change
    from mutt_app.db.engine import session_factory

    if not reason.strip():
        raise click.ClickException("--reason must not be blank")
    return audited_change(
        session_factory(obj.engine),
        _workers_redis(obj),
        changed_by=_cli_user(),
        reason=reason.strip(),
    )


def _report(change, done: str, unchanged: str) -> None:  # type: ignore[no-untyped-def]
    """One line on what the change did; warnings (the rules version not bumped) on stderr."""
    if not change.changed:
        click.echo(unchanged)
        return
    version = change.rules_version if change.rules_version is not None else "not bumped"
    click.echo(f"{done} (rules version {version}, correlation id {change.correlation_id})")
    for warning in change.warnings:
        click.echo(f"warning: {warning}", err=True)


def _hostname(value: str) -> str:
    # Stripped, as ingest strips an event's hostname and the API stores it.
    hostname = value.strip()
    if not hostname:
        raise click.ClickException("the hostname must not be blank")
    return hostname


@main.group()
def rules() -> None:
    """Enable or disable alert rules, backtest and publish rule drafts (audited; workers reload
    within seconds)."""


@rules.command("enable")
@click.argument("rule_id", type=click.IntRange(1, 2**31 - 1))
@_change_reason
@pass_context
def rules_enable(obj: Context, rule_id: int, reason: str) -> None:
    """Activate rule RULE_ID."""
    _set_rule_active(obj, rule_id, True, reason)


@rules.command("disable")
@click.argument("rule_id", type=click.IntRange(1, 2**31 - 1))
@_change_reason
@pass_context
def rules_disable(obj: Context, rule_id: int, reason: str) -> None:
    """Deactivate rule RULE_ID (it stays, for the audit; ``enable`` brings it back)."""
    _set_rule_active(obj, rule_id, False, reason)


def _set_rule_active(obj: Context, rule_id: int, active: bool, reason: str) -> None:
    from mutt_app.db.models import AlertRule

    with _audited(obj, reason) as change:
        rule = change.locked(AlertRule, id=rule_id)
        if rule is None:
            raise click.ClickException(f"no rule {rule_id}")
        change.update(rule, {"is_active": active})
    state = "enabled" if active else "disabled"
    _report(change, f"rule {rule_id} {state}", f"rule {rule_id} already is {state}")


@rules.command("backtest")
@click.argument("draft_id", type=click.IntRange(1, 2**31 - 1))
@click.option("--hours", type=click.IntRange(1, 720), default=24, show_default=True)
@click.option(
    "--budget",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to spend at most (default BACKTEST_TIME_BUDGET_SECONDS; no web timeout here).",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    help="Audited events to decide again at most (default BACKTEST_MAX_ROWS).",
)
@pass_context
def rules_backtest(
    obj: Context, draft_id: int, hours: int, budget: float | None, max_rows: int | None
) -> None:
    """How the audited events of the last HOURS would be decided under stored draft DRAFT_ID:
    the changed decisions, as JSON (the answer of POST /api/v2/rules/backtest)."""
    import orjson

    from mutt_app.db.engine import session_factory
    from mutt_app.db.models import RuleDraft
    from mutt_app.rules.backtest import run_backtest
    from mutt_app.rules.drafts import Draft, DraftError

    with session_factory(obj.engine)() as session:
        row = session.get(RuleDraft, draft_id)
        if row is None:
            raise click.ClickException(f"no draft {draft_id}")
        try:
            result = run_backtest(
                session,
                Draft.from_document(row.document),
                hours,
                default_team=obj.settings.unhandled_default_team,
                max_rows=max_rows or obj.settings.backtest_max_rows,
                budget_seconds=budget or obj.settings.backtest_time_budget_seconds,
            )
        except DraftError as exc:
            raise click.ClickException(f"the draft does not fit the live rules: {exc}") from None
    click.echo(orjson.dumps(result.as_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_NAIVE_UTC))


@rules.command("publish")
@click.argument("draft_id", type=click.IntRange(1, 2**31 - 1))
@_change_reason
@pass_context
def rules_publish(obj: Context, draft_id: int, reason: str) -> None:
    """Apply stored draft DRAFT_ID to the live rules: one audit row per changed rule."""
    from mutt_app.rules.drafts import DraftError, publish_stored

    try:
        with _audited(obj, reason) as change:
            published = publish_stored(change, draft_id)
            if published is None:
                raise click.ClickException(f"no draft {draft_id}")
    except DraftError as exc:
        raise click.ClickException(f"not published: {exc}") from None
    _report(change, f"draft {draft_id} published", f"draft {draft_id} changed nothing")


@main.group("dev-hosts")
def dev_hosts() -> None:
    """Mark hosts as development (their events get the rules' dev_handling), audited."""


@dev_hosts.command("add")
@click.argument("hostname")
@click.option("--description", help="What the host is.")
@_change_reason
@pass_context
def dev_hosts_add(obj: Context, hostname: str, description: str | None, reason: str) -> None:
    """Mark HOSTNAME as a development host."""
    from sqlalchemy.exc import IntegrityError

    from mutt_app.db.models import DevelopmentHost

    hostname = _hostname(hostname)
    try:
        with _audited(obj, reason) as change:
            change.create(DevelopmentHost(hostname=hostname, description=description or None))
    except IntegrityError:  # the UNIQUE constraint decides, so two concurrent adds cannot both win
        raise click.ClickException(f"development host {hostname!r} already exists") from None
    _report(change, f"{hostname} is a development host", "")


@dev_hosts.command("remove")
@click.argument("hostname")
@_change_reason
@pass_context
def dev_hosts_remove(obj: Context, hostname: str, reason: str) -> None:
    """Make HOSTNAME a production host again."""
    from mutt_app.db.models import DevelopmentHost

    with _audited(obj, reason) as change:
        host = change.locked(DevelopmentHost, hostname=hostname)
        if host is None:
            raise click.ClickException(f"no development host {hostname!r}")
        change.delete(host)
    _report(change, f"{hostname} is a production host again", "")


@main.group()
def teams() -> None:
    """Map hosts to teams, overriding their rules' team (audited)."""


@teams.command("set")
@click.argument("hostname")
@click.argument("team")
@_change_reason
@pass_context
def teams_set(obj: Context, hostname: str, team: str, reason: str) -> None:
    """Map HOSTNAME to TEAM (a new mapping, or a change of the existing one)."""
    from sqlalchemy.exc import IntegrityError

    from mutt_app.db.models import DeviceTeam

    hostname = _hostname(hostname)
    if not team.strip():
        raise click.ClickException("the team must not be blank")
    try:
        with _audited(obj, reason) as change:
            mapping = change.locked(DeviceTeam, hostname=hostname)
            if mapping is None:
                change.create(DeviceTeam(hostname=hostname, team_assignment=team))
            else:
                change.update(mapping, {"team_assignment": team})
    except IntegrityError:  # mapped meanwhile by someone else
        raise click.ClickException(f"host {hostname!r} was mapped meanwhile; try again") from None
    _report(change, f"{hostname} maps to {team}", f"{hostname} already maps to {team}")


@teams.command("remove")
@click.argument("hostname")
@_change_reason
@pass_context
def teams_remove(obj: Context, hostname: str, reason: str) -> None:
    """Remove HOSTNAME's team mapping (its events get their rule's team again)."""
    from mutt_app.db.models import DeviceTeam

    with _audited(obj, reason) as change:
        mapping = change.locked(DeviceTeam, hostname=hostname)
        if mapping is None:
            raise click.ClickException(f"no team mapping for host {hostname!r}")
        change.delete(mapping)
    _report(change, f"{hostname} has no team mapping any more", "")


@main.group()
def heartbeats() -> None:
    """Hosts (a name, a glob, or a device team's) that must send an event every N minutes."""


@heartbeats.command("list")
@pass_context
def heartbeats_list(obj: Context) -> None:
    """Every heartbeat, with the hosts quiet now (as the last check recorded them)."""
    from sqlalchemy import select

    from mutt_app.db.engine import session_factory
    from mutt_app.db.models import Heartbeat
    from mutt_app.watch.heartbeats import quiet_hosts

    with session_factory(obj.engine)() as session:
        rows = session.scalars(select(Heartbeat).order_by(Heartbeat.name)).all()
    client = _workers_redis(obj)
    quiet = quiet_hosts(client) if client is not None else None
    if not rows:
        click.echo("no heartbeats (add one with: mutt heartbeats add NAME --host H --every 5)")
    for row in rows:
        watched = f"host {row.host}" if row.host is not None else f"team {row.team}"
        state = "active" if row.is_active else "inactive"
        click.echo(
            f"{row.id:>4} {row.name:<24} {watched:<28} every {row.interval_minutes:>5} min"
            f"  {row.handling:<15} {state}"
        )
    if quiet is None:
        click.echo("quiet hosts: unknown (embedded Redis; see the admin page)")
    for entry in quiet or []:
        last = entry["last_event"] or "never"
        click.echo(f"QUIET {entry['host']} ({entry['heartbeat']}): last event {last}")


@heartbeats.command("add")
@click.argument("name")
@click.option("--host", help="A host name, or a glob (db-*) over the hosts heard from.")
@click.option("--team", help="A device team: every host mapped to it.")
@click.option("--every", "minutes", type=click.IntRange(1, 10_080), required=True, help="Minutes.")
@click.option(
    "--handling",
    type=click.Choice(["Page_and_ticket", "Ticket_only", "Email_only", "Log_only"]),
    default="Ticket_only",
    show_default=True,
    help="The alert's lane.",
)
@click.option("--team-assignment", help="The alert's Moog class (default: the host's team).")
@_change_reason
@pass_context
def heartbeats_add(
    obj: Context,
    name: str,
    host: str | None,
    team: str | None,
    minutes: int,
    handling: str,
    team_assignment: str | None,
    reason: str,
) -> None:
    """Add heartbeat NAME: --host or --team must send an event every --every minutes."""
    from sqlalchemy.exc import IntegrityError

    from mutt_app.db.models import Heartbeat

    host = (host or "").strip() or None
    team = (team or "").strip() or None
    if not name.strip():
        raise click.ClickException("the name must not be blank")
    if (host is None) == (team is None):
        raise click.UsageError("give exactly one of --host and --team")
    row = Heartbeat(
        name=name.strip(),
        host=host,
        team=team,
        interval_minutes=minutes,
        handling=handling,
        team_assignment=(team_assignment or "").strip() or None,
    )
    try:
        with _audited(obj, reason) as change:
            change.create(row)
    except IntegrityError:
        raise click.ClickException(f"a heartbeat named {name!r} already exists") from None
    _report(change, f"heartbeat {name!r} added", "")


@heartbeats.command("remove")
@click.argument("name")
@_change_reason
@pass_context
def heartbeats_remove(obj: Context, name: str, reason: str) -> None:
    """Delete heartbeat NAME; the next check clears its open alerts."""
    from mutt_app.db.models import Heartbeat

    with _audited(obj, reason) as change:
        row = change.locked(Heartbeat, name=name)
        if row is None:
            raise click.ClickException(f"no heartbeat {name!r}")
        change.delete(row)
    _report(change, f"heartbeat {name!r} removed", "")


@main.group()
def windows() -> None:
    """Maintenance windows: list them, add one, end an open one now (audited)."""


def _when(value: str | None, option: str, tz: tzinfo) -> datetime | None:
    """An ISO 8601 date-time option; one without an offset is read in the window's time zone,
    as an operator typing "2026-12-24T02:00" means it."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("an ISO 8601 date-time", param_hint=option) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


@windows.command("list")
@click.option("--active", is_flag=True, help="Only windows open now.")
@pass_context
def windows_list(obj: Context, active: bool) -> None:
    """Every window: id, name, action, open now or not, its schedule and next occurrence."""
    from sqlalchemy import select

    from mutt_app.db.engine import session_factory
    from mutt_app.db.models import MaintenanceWindow
    from mutt_app.holdback.windows import describe

    now = datetime.now(UTC)
    with session_factory(obj.engine)() as session:
        rows = session.scalars(select(MaintenanceWindow).order_by(MaintenanceWindow.name)).all()
        described = [describe(row, now, upcoming=1) for row in rows]
    shown = [w for w in described if w["active"] or not active]
    if not shown:
        click.echo("no maintenance windows" + (" open now" if active else ""))
        return
    for w in shown:
        state = f"OPEN until {w['occurrence']['end']}" if w["active"] else "closed"
        when = (
            f"{w['rrule']} for {w['duration_minutes']} min ({w['timezone']})"
            if w["rrule"]
            else (f"{w['starts_at']} .. {w['ends_at']}")
        )
        upcoming = w["next_occurrences"]
        nxt = f"; next {upcoming[0]['start']}" if upcoming and not w["active"] else ""
        click.echo(f"{w['id']:>4} {w['name']!r} {w['action']} {state}; {when}{nxt}")


@windows.command("add")
@click.argument("name")
@click.option("--starts-at", required=True, help="ISO 8601 date-time (offset, else --timezone).")
@click.option("--ends-at", help="One-off: ISO 8601 date-time (or --duration).")
@click.option("--duration", "duration_minutes", type=int, help="Minutes (each occurrence).")
@click.option("--rrule", help='RFC 5545 RRULE, e.g. "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2".')
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--host", "hosts", multiple=True, help="Host name or glob (repeatable).")
@click.option("--team", "teams", multiple=True, help="Device team (repeatable).")
@click.option("--rule", "rule_ids", type=int, multiple=True, help="Rule id (repeatable).")
@click.option("--oid-prefix", "oid_prefixes", multiple=True, help="Trap-OID prefix (repeatable).")
@click.option(
    "--action", type=click.Choice(["suppress", "downgrade"]), required=True, help="What it does."
)
@click.option("--no-summary", is_flag=True, help="No summary alert when an occurrence ends.")
@_change_reason
@pass_context
def windows_add(
    obj: Context,
    name: str,
    starts_at: str,
    ends_at: str | None,
    duration_minutes: int | None,
    rrule: str | None,
    timezone: str,
    hosts: tuple[str, ...],
    teams: tuple[str, ...],
    rule_ids: tuple[int, ...],
    oid_prefixes: tuple[str, ...],
    action: str,
    no_summary: bool,
    reason: str,
) -> None:
    """Add the maintenance window NAME (validated as the REST API validates it)."""
    from sqlalchemy.exc import IntegrityError

    from mutt_app.db.models import MaintenanceWindow
    from mutt_app.holdback import windows as mw

    try:
        tz = mw.zone(timezone)
        stored = mw.validate(
            {
                "name": name,
                "starts_at": _when(starts_at, "--starts-at", tz),
                "ends_at": _when(ends_at, "--ends-at", tz),
                "duration_minutes": duration_minutes,
                "rrule": rrule,
                "timezone": timezone,
                "hosts": list(hosts),
                "teams": list(teams),
                "rule_ids": list(rule_ids),
                "oid_prefixes": list(oid_prefixes),
                "action": action,
                "summary_alert": not no_summary,
            }
        )
    except mw.WindowError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        with _audited(obj, reason) as change:
            row = MaintenanceWindow(**stored)
            change.create(row)
            described = mw.describe(row, datetime.now(UTC), upcoming=1)
    except IntegrityError:
        raise click.ClickException(f"a window named {stored['name']!r} exists") from None
    state = "open now" if described["active"] else "closed now"
    upcoming = described["next_occurrences"]
    nxt = f", next occurrence {upcoming[0]['start']}" if upcoming else ", no occurrence to come"
    _report(change, f"window {described['id']} {stored['name']!r} added ({state}{nxt})", "")


@windows.command("end")
@click.argument("window")
@_change_reason
@pass_context
def windows_end(obj: Context, window: str, reason: str) -> None:
    """End the open occurrence of WINDOW (its id or name) now; later occurrences still run."""
    from mutt_app.db.models import MaintenanceWindow
    from mutt_app.holdback import windows as mw

    with _audited(obj, reason) as change:
        by = {"id": int(window)} if window.isdigit() else {"name": window}
        row = change.locked(MaintenanceWindow, **by)
        if row is None:
            raise click.ClickException(f"no maintenance window {window!r}")
        try:
            occurrence = mw.end_now(change, row)
        except mw.WindowError as exc:
            raise click.ClickException(str(exc)) from None
        window_id, schedule = row.id, mw.schedule_of(row)
    mw.after_change(_workers_redis(obj), 2 * obj.settings.reconcile_after, window_id, schedule)
    _report(
        change,
        f"window {window_id} ended (its occurrence since {occurrence.start.isoformat()})",
        "",
    )


def _where(obj: Context) -> str:
    return obj.engine.url.render_as_string(hide_password=True)
