"""Forwarding to Moog: payload formats, lanes, delivery history and dead letters."""
