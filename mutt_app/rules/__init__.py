"""Rules: validate (a rule's fields and bounds), literals and compile (the multi-pattern matcher),
snapshot (the rules' data as of one version), decide (which rule wins), and the tools around them
(cache, tester, drafts, backtest). Rules sit below holdback: maintenance windows are not in the
snapshot but in :mod:`mutt_app.holdback.window_cache`, reloaded with it."""
