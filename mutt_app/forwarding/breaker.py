"""The circuit breaker in front of Moog, shared in Redis by every worker (``lua/circuit.lua``)."""

from __future__ import annotations

from typing import Any

import redis
from redis.client import Pipeline

from mutt_app.lua.loader import LuaScript

CIRCUIT_LUA = LuaScript("mutt_app.forwarding", "circuit")

CIRCUIT_STATES = {"CLOSED": 0, "OPEN": 1, "HALF_OPEN": 2}


class CircuitBreaker:
    """CLOSED -> OPEN after N consecutive failures -> HALF_OPEN (one probe) -> CLOSED or OPEN."""

    def __init__(self, client: redis.Redis, prefix: str = "mutt:circuit:moog") -> None:
        self.keys = [
            f"{prefix}:state",
            f"{prefix}:failures",
            f"{prefix}:opened_at",
            f"{prefix}:probe",
        ]
        self.script = CIRCUIT_LUA.register(client)
        self.client = client

    def _call(self, op: str, threshold: int, open_seconds: float) -> tuple[bool, float, str]:
        return _circuit_reply(self.script(keys=self.keys, args=[op, threshold, open_seconds]))

    def allow(self, threshold: int, open_seconds: float) -> tuple[bool, float]:
        """May a request go to Moog now? Else, how many seconds until it may."""
        allowed, wait, _ = self._call("allow", threshold, open_seconds)
        return allowed, wait

    def record_success(self) -> str:
        return self._record(False, 0, 0)

    def record_failure(self, threshold: int, open_seconds: float) -> str:
        return self._record(True, threshold, open_seconds)

    def _record(self, failed: bool, threshold: int, open_seconds: float) -> str:
        # Through the queued path forward_to_moog uses, so both are one piece of code.
        pipe = self.client.pipeline(transaction=False)
        self.queue_verdict(pipe, failed, threshold, open_seconds)
        return self.state_after(pipe.execute()[-1])

    def queue_verdict(
        self, pipe: Pipeline, failed: bool, threshold: int, open_seconds: float
    ) -> None:
        """Queue :meth:`record_failure` or :meth:`record_success` on ``pipe``.

        Its reply, read by :meth:`state_after`, is the state the verdict left the circuit in.
        """
        op = "failure" if failed else "success"
        self.script(keys=self.keys, args=[op, threshold, open_seconds], client=pipe)

    @staticmethod
    def state_after(reply: list[Any]) -> str:
        """The state in the reply of a verdict queued by :meth:`queue_verdict`."""
        return _circuit_reply(reply)[2]

    def release_probe(self) -> None:
        """Give up a probe slot taken by :meth:`allow` without trying (e.g. rate-limited)."""
        self.client.delete(self.keys[3])

    def state(self) -> str:
        raw = self.client.get(self.keys[0])
        return raw.decode() if raw else "CLOSED"


def _circuit_reply(reply: list[Any]) -> tuple[bool, float, str]:
    allowed, wait_ms, state = reply
    state = state.decode() if isinstance(state, bytes) else state
    return bool(int(allowed)), int(wait_ms) / 1000, state
