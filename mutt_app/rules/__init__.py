"""Rules: validate, compile, decide, and the tools around them (cache, tester, drafts, backtest)."""
