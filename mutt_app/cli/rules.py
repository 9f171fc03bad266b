"""``mutt rules``: enable and disable alert rules, backtest and publish rule drafts (audited)."""

from __future__ import annotations

import click
import orjson

from mutt_app.cli.audited import audited, change_reason, report
from mutt_app.cli.context import Context, pass_context
from mutt_app.commands.drafts import publish_stored
from mutt_app.commands.errors import Conflict, Invalid, NotFound
from mutt_app.db.models import AlertRule, RuleDraft
from mutt_app.rules.backtest import run_backtest
from mutt_app.rules.drafts import Draft, DraftError

_RULE_ID = click.IntRange(1, 2**31 - 1)


@click.group()
def rules() -> None:
    """Enable or disable alert rules, backtest and publish rule drafts (audited; workers reload
    within seconds)."""


@rules.command("enable")
@click.argument("rule_id", type=_RULE_ID)
@change_reason
@pass_context
def rules_enable(obj: Context, rule_id: int, reason: str) -> None:
    """Activate rule RULE_ID."""
    _set_rule_active(obj, rule_id, True, reason)


@rules.command("disable")
@click.argument("rule_id", type=_RULE_ID)
@change_reason
@pass_context
def rules_disable(obj: Context, rule_id: int, reason: str) -> None:
    """Deactivate rule RULE_ID (it stays, for the audit; ``enable`` brings it back)."""
    _set_rule_active(obj, rule_id, False, reason)


def _set_rule_active(obj: Context, rule_id: int, active: bool, reason: str) -> None:
    with audited(obj, reason) as change:
        rule = change.locked(AlertRule, id=rule_id)
        if rule is None:
            raise click.ClickException(f"no rule {rule_id}")
        change.update(rule, {"is_active": active})
    state = "enabled" if active else "disabled"
    report(change, f"rule {rule_id} {state}", f"rule {rule_id} already is {state}")


@rules.command("backtest")
@click.argument("draft_id", type=_RULE_ID)
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
    with obj.sessions() as session:
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
@click.argument("draft_id", type=_RULE_ID)
@click.option(
    "--force",
    is_flag=True,
    help="Publish even over rules changed since the draft was based on them.",
)
@change_reason
@pass_context
def rules_publish(obj: Context, draft_id: int, force: bool, reason: str) -> None:
    """Apply stored draft DRAFT_ID to the live rules: one audit row per changed rule."""
    try:
        with audited(obj, reason) as change:
            publish_stored(change, draft_id, force=force)
    except NotFound:
        raise click.ClickException(f"no draft {draft_id}") from None
    except (Conflict, Invalid) as exc:
        raise click.ClickException(f"not published: {exc.message}") from None
    report(change, f"draft {draft_id} published", f"draft {draft_id} changed nothing")
