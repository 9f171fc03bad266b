"""Commands: every change an operator or admin makes, validated once, locked, applied and audited."""
