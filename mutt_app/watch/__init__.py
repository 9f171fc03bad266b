"""Watching MUTT and the estate: heartbeats, unhandled events, SLOs and the dashboard's figures."""
