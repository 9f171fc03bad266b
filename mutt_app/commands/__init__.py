"""Commands: every change an operator or admin makes, validated once, locked, applied and audited.

One module per entity, one function per verb: :mod:`~mutt_app.commands.rules`,
:mod:`~mutt_app.commands.hosts` (development hosts), :mod:`~mutt_app.commands.teams` (device teams),
:mod:`~mutt_app.commands.windows` (maintenance windows), :mod:`~mutt_app.commands.heartbeats`,
:mod:`~mutt_app.commands.drafts` (rule drafts, publishing, the backtest),
:mod:`~mutt_app.commands.deadletters` (replay, purge), :mod:`~mutt_app.commands.users` (accounts)
and :mod:`~mutt_app.commands.dynamic_config`. They run inside an audited change
(:mod:`~mutt_app.commands.changes`: lock ``FOR UPDATE``, apply, write ``config_audit_log`` in the
same transaction, bump the rules version after the commit) that the caller opens with who and why,
and refuse with :mod:`~mutt_app.commands.errors` (NotFound, Invalid, Conflict). The REST API, the
admin UI and the CLI only translate their input into a command and its refusals into their answers.

One read lives here too, shared by the API and the admin UI like the commands:
:mod:`~mutt_app.commands.events` (one event's whole story, "why did this not page me?").
"""
