"""Forwarding to Moog: payload formats, lanes, the rate limit and circuit breaker, delivery history
and dead letters."""
