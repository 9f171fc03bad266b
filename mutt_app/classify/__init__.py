"""Classify: what happens to one batch of events, from decision to audit row."""
