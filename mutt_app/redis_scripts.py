"""Atomic Redis scripts shared by every worker on every host.

Lua runs atomically in Redis, so two workers racing on the same key can never both see themselves as
the one that crossed a threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from redis.client import Pipeline

# KEYS[1] the host's counter, KEYS[2] its triggered marker; ARGV increment, threshold, window seconds.
# Returns the count that crossed the threshold, or 0. Renaming the counter to the marker (which keeps
# its TTL) means the rest of the window finds the marker and raises nothing more.
_UNHANDLED = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
if count == tonumber(ARGV[1]) then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
if count >= tonumber(ARGV[2]) then
  redis.call('RENAME', KEYS[1], KEYS[2])
  return count
end
return 0
"""


class UnhandledCounter:
    """Per-host counters of events that matched no rule; one meta-alert per host per window."""

    def __init__(
        self, client: redis.Redis, prefix: str, threshold: int, window_seconds: int
    ) -> None:
        self.prefix = prefix
        self.threshold = threshold
        self.window = window_seconds
        self.script = client.register_script(_UNHANDLED)
        self.client = client

    def add(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Count unmatched events per hostname; returns the hosts that crossed the threshold now."""
        if not counts:
            return {}
        pipe = self.client.pipeline(transaction=False)
        hosts = list(counts)
        for host in hosts:
            keys = [f"{self.prefix}:{host}", f"{self.prefix}:triggered:{host}"]
            self.script(keys=keys, args=[counts[host], self.threshold, self.window], client=pipe)
        results = pipe.execute()
        return {host: int(n) for host, n in zip(hosts, results, strict=True) if int(n) > 0}


# Sliding-window log. KEYS[1] the window's sorted set, KEYS[2] the caller's lane's waiting line tail
# (ms); ARGV window seconds, the lane's cap (the slots of the window this request may fill), a unique
# member, seconds the request may stay in flight, the longest wait to hand out (seconds). Returns
# {1, 0} when admitted, else {0, milliseconds to wait}.
# An admitted request is scored at the end of its longest possible flight; :meth:`RateLimiter.finish`
# re-scores it when its response arrives. The window therefore counts every request that was in flight
# at any moment of the last period, so the receiver, whatever the network delay, never sees more than
# the limit within one period. Time comes from the Redis server: workers with skewed clocks share it.
# Lanes share the window but not the cap: pages may fill all of it, tickets only what is not reserved
# for pages, so tickets alone never take the pages' share.
# A refused request joins its lane's waiting line: each gets a turn one slot-interval (window / cap)
# after the last, so a backlog of N comes back spread over N / cap periods instead of all at once
# every period, and a page never waits behind the tickets' line.
_RATE_LIMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = math.floor(tonumber(ARGV[1]) * 1000)
local cap = tonumber(ARGV[2])
local flight = math.floor(tonumber(ARGV[4]) * 1000)
local longest = math.floor(tonumber(ARGV[5]) * 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < cap then
  redis.call('ZADD', KEYS[1], now + flight, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window + flight)
  return {1, 0}
end
-- The lane has room again once the (count - cap + 1) oldest members have left the window.
local leaving = redis.call('ZRANGE', KEYS[1], count - cap, count - cap, 'WITHSCORES')
local first = math.min(tonumber(leaving[2]) + window - now, window)
local interval = math.max(math.floor(window / cap), 1)
local turn = math.max(tonumber(redis.call('GET', KEYS[2]) or '0') + interval, now + first)
if turn - now > longest then
  return {0, longest}
end
redis.call('SET', KEYS[2], turn, 'PX', turn - now + window)
return {0, turn - now}
"""

# KEYS[1] the window's sorted set; ARGV[1] the member admitted by _RATE_LIMIT. XX: a member that has
# already left the window is not brought back.
_RATE_FINISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
return 1
"""


class RateLimiter:
    """A rate limit shared by every worker on every host (MOOG_RATE_LIMIT per MOOG_RATE_PERIOD)."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.key = key
        self.script = client.register_script(_RATE_LIMIT)
        self.finish_script = client.register_script(_RATE_FINISH)

    def acquire(
        self,
        limit: int,
        period: float,
        token: str,
        flight: float = 0.0,
        longest_wait: float = 60.0,
        *,
        reserved: int = 0,
        page: bool = False,
    ) -> float:
        """Take a slot for a request that may last ``flight`` seconds.

        ``reserved`` slots of each window are kept for pages: a page (``page=True``) may fill the
        whole ``limit``, any other request only ``limit - reserved`` (at least one). Returns 0.0 when
        admitted, else the seconds to wait before trying again: the caller's turn in its lane's
        waiting line, at most ``longest_wait``.
        """
        cap = limit if page else max(limit - reserved, 1)
        tail = f"{self.key}:tail:page" if page else f"{self.key}:tail"
        admitted, wait_ms = self.script(
            keys=[self.key, tail], args=[period, cap, token, flight, longest_wait]
        )
        return 0.0 if int(admitted) else max(int(wait_ms), 1) / 1000

    def finish(self, token: str, pipe: Pipeline | None = None) -> None:
        """The request admitted as ``token`` got its answer: its slot now ages from this moment.

        With ``pipe``, the command is queued on that pipeline instead of sent now.
        """
        self.finish_script(keys=[self.key], args=[token], client=pipe)


# Circuit breaker shared in Redis. KEYS: state, failures, opened_at (ms), probe lock.
# ARGV[1] the operation: 'allow', 'success' or 'failure'; ARGV[2] threshold; ARGV[3] open seconds.
# 'allow' returns {allowed, wait_ms, state}; the others return {0, 0, state}.
_CIRCUIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op, threshold, open_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]) * 1000
local state = redis.call('GET', KEYS[1]) or 'CLOSED'
if op == 'allow' then
  if state == 'CLOSED' then return {1, 0, state} end
  local opened = tonumber(redis.call('GET', KEYS[3]) or '0')
  if state == 'OPEN' and now - opened < open_ms then
    return {0, open_ms - (now - opened), state}
  end
  -- Open long enough: let exactly one probe through; everyone else waits for its verdict.
  if redis.call('SET', KEYS[4], '1', 'NX', 'PX', open_ms) then
    redis.call('SET', KEYS[1], 'HALF_OPEN')
    return {1, 0, 'HALF_OPEN'}
  end
  return {0, 1000, 'HALF_OPEN'}
elseif op == 'success' then
  redis.call('SET', KEYS[1], 'CLOSED')
  redis.call('SET', KEYS[2], 0)
  redis.call('DEL', KEYS[4])
  return {0, 0, 'CLOSED'}
else
  local failures = redis.call('INCR', KEYS[2])
  if state == 'HALF_OPEN' or (state == 'CLOSED' and failures >= threshold) then
    redis.call('SET', KEYS[1], 'OPEN')
    redis.call('SET', KEYS[3], now)
    redis.call('DEL', KEYS[4])
    return {0, 0, 'OPEN'}
  end
  return {0, 0, state}
end
"""

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
        self.script = client.register_script(_CIRCUIT)
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


# Dedup windows. KEYS[1] this batch's result (idempotency), KEYS[2] the hash of closed windows
# awaiting their update, KEYS[3] the sorted set of windows with repeats (by closing time), then one
# window hash per fingerprint of the batch. ARGV[1] how long to remember the batch's result
# (seconds), then six per fingerprint, in KEYS order: the correlation_id of its first event in the
# batch, its number of events, the last one's time (epoch ms) and correlation_id, the window
# (seconds), and the first event's alert (JSON). Returns, per fingerprint, "1:<id>" when its first
# event opened a window (forward it; the rest repeat it) or "0:<id>" when all of them repeat the
# open window <id>.
# A fingerprint of a batch seen before gets its first answer again (KEYS[1] is a hash, field the
# window key), so a redelivered batch counts nothing twice. A
# window without repeats expires when it closes; one with repeats stays until it is moved to
# KEYS[2], by the flush or by the next event after it closed, so no count is lost to expiry.
_DEDUP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local results = {}
for i = 4, #KEYS do
  local a = 2 + (i - 4) * 6
  local id, n, last_at, last_id = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3]
  local window, alert = tonumber(ARGV[a + 4]), ARGV[a + 5]
  local key = KEYS[i]
  local remembered = redis.call('HGET', KEYS[1], key)
  if remembered then
    results[#results + 1] = remembered
  else
    local open = redis.call('HMGET', key, 'id', 'closes', 'count')
    if open[1] and tonumber(open[2]) <= now then
      if tonumber(open[3]) > 0 then
        local fields = redis.call('HGETALL', key)
        local window_data = {}
        for j = 1, #fields, 2 do window_data[fields[j]] = fields[j + 1] end
        redis.call('HSET', KEYS[2], open[1], cjson.encode(window_data))
        redis.call('ZREM', KEYS[3], key)
      end
      redis.call('DEL', key)
      open[1] = false
    end
    if not open[1] then
      local closes = now + window * 1000
      redis.call('HSET', key, 'id', id, 'opened', now, 'closes', closes, 'window', window,
        'count', n - 1, 'alert', alert)
      if n > 1 then
        redis.call('HSET', key, 'last_at', last_at, 'last_id', last_id)
        redis.call('ZADD', KEYS[3], closes, key)
      else
        redis.call('PEXPIREAT', key, closes)
      end
      results[#results + 1] = '1:' .. id
    else
      redis.call('HINCRBY', key, 'count', n)
      local previous = tonumber(redis.call('HGET', key, 'last_at') or '0')
      if tonumber(last_at) >= previous then
        redis.call('HSET', key, 'last_at', last_at, 'last_id', last_id)
      end
      if tonumber(open[3]) == 0 then
        redis.call('PERSIST', key)
        redis.call('ZADD', KEYS[3], open[2], key)
      end
      results[#results + 1] = '0:' .. open[1]
    end
    redis.call('HSET', KEYS[1], key, results[#results])
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return results
"""

# KEYS[1] the closed windows' hash, KEYS[2] the sorted set of windows with repeats, then window
# hashes that were due. Each one that has closed moves to KEYS[1] (if it had repeats) and leaves
# KEYS[2]. Returns how many moved.
_DEDUP_CLOSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local moved = 0
for i = 3, #KEYS do
  local key = KEYS[i]
  local open = redis.call('HMGET', key, 'id', 'closes', 'count')
  if not open[1] then
    redis.call('ZREM', KEYS[2], key)
  elseif tonumber(open[2]) <= now then
    if tonumber(open[3]) > 0 then
      local fields = redis.call('HGETALL', key)
      local window_data = {}
      for j = 1, #fields, 2 do window_data[fields[j]] = fields[j + 1] end
      redis.call('HSET', KEYS[1], open[1], cjson.encode(window_data))
      moved = moved + 1
    end
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[2], key)
  end
end
return moved
"""


@dataclass(frozen=True, slots=True)
class Repeats:
    """The events of one batch that share a fingerprint, as :class:`DedupWindows` counts them."""

    fingerprint: str
    first_id: str  # correlation_id of the group's first event
    count: int
    last_at_ms: int  # the last event's time
    last_id: str
    window_seconds: int
    alert: bytes  # the first event's Moog payload, JSON


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A dedup window that closed with repeats: what its one update to Moog must carry."""

    window_id: str  # the forwarded alert's correlation_id
    alert: dict[str, Any]
    count: int
    last_at_ms: int
    last_id: str
    window_seconds: int


class DedupWindows:
    """Dedup windows per fingerprint, shared by every worker on every host.

    :meth:`observe` decides which events of a batch repeat an alert forwarded within its window and
    counts them, atomically and idempotently per batch; :meth:`close_due` and :meth:`closed` hand
    the windows that closed with repeats to the flush job, which sends one update each and then
    calls :meth:`forget`.
    """

    def __init__(self, client: redis.Redis, prefix: str, remember_seconds: int) -> None:
        self.client = client
        self.prefix = prefix
        self.remember = remember_seconds
        self.closed_key = f"{prefix}:closed"
        self.due_key = f"{prefix}:due"
        self.script = client.register_script(_DEDUP)
        self.close_script = client.register_script(_DEDUP_CLOSE)

    def window_key(self, fingerprint: str) -> str:
        return f"{self.prefix}:window:{fingerprint}"

    def observe(self, batch_key: str, groups: Sequence[Repeats]) -> dict[str, tuple[bool, str]]:
        """Count ``groups`` (one per fingerprint) of the batch identified by ``batch_key``.

        Returns, per fingerprint, (opened, window id): opened means the group's first event opened
        a new window and is to be forwarded; every other event repeats the window id's alert.
        """
        if not groups:
            return {}
        keys = [f"{self.prefix}:batch:{batch_key}", self.closed_key, self.due_key]
        args: list[Any] = [self.remember]
        for group in groups:
            keys.append(self.window_key(group.fingerprint))
            args += [
                group.first_id,
                group.count,
                group.last_at_ms,
                group.last_id,
                group.window_seconds,
                group.alert,
            ]
        replies = self.script(keys=keys, args=args)
        answers = {}
        for group, reply in zip(groups, replies, strict=True):
            opened, _, window_id = (
                reply.decode() if isinstance(reply, bytes) else reply
            ).partition(":")
            answers[group.fingerprint] = (opened == "1", window_id)
        return answers

    def close_due(self, limit: int = 1000) -> int:
        """Move the windows that closed with repeats to the closed set; returns how many moved."""
        seconds, micros = self.client.time()
        now_ms = seconds * 1000 + micros // 1000
        due = self.client.zrangebyscore(self.due_key, "-inf", now_ms, start=0, num=limit)
        if not due:
            return 0
        keys = [self.closed_key, self.due_key, *(k.decode() for k in due)]
        return int(self.close_script(keys=keys, args=[]))

    def closed(self, limit: int = 1000) -> list[ClosedWindow]:
        """Closed windows whose update has not been sent yet (at most about ``limit``)."""
        found = []
        for window_id, raw in self.client.hscan_iter(self.closed_key, count=limit):
            data = orjson.loads(raw)
            found.append(
                ClosedWindow(
                    window_id=window_id.decode(),
                    alert=orjson.loads(data["alert"]),
                    count=int(data["count"]),
                    last_at_ms=int(data.get("last_at") or 0),
                    last_id=data.get("last_id") or "",
                    window_seconds=int(data["window"]),
                )
            )
            if len(found) >= limit:
                break
        return found

    def forget(self, window_ids: Sequence[str]) -> None:
        """The updates of these closed windows are in the outbox: drop them."""
        if window_ids:
            self.client.hdel(self.closed_key, *window_ids)
