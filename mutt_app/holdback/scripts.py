"""Atomic Redis scripts shared by every worker on every host.

Lua runs atomically in Redis, so two workers racing on the same key can never both see themselves as
the one that crossed a threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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

# Any ClosingWindows (dedup, storm budgets, flapping). KEYS[1] the closed windows' hash, KEYS[2]
# the sorted set of windows that held something, then window hashes that were due. Each one that has closed moves to KEYS[1] (if it had repeats) and leaves
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


class ClosingWindows:
    """Windows in Redis that hand what they held to the flush job when they close.

    A window is a hash with at least ``id`` (unique per window), ``closes`` (epoch ms) and
    ``count`` (what it held). One that held something is in the due set (scored by ``closes``)
    and never expires; when it closes, its fields move, as JSON, to the closed hash under its id
    (:meth:`close_due`, or the owning script when the next event finds it closed). The flush job
    reads them (:meth:`pending`), publishes one alert each, then calls :meth:`forget`: a flush
    killed in between publishes the same alerts again, with the same external_ids.
    Deduplication, storm budgets and flapping each keep their windows this way, under their prefix.
    """

    def __init__(self, client: redis.Redis, prefix: str, remember_seconds: int) -> None:
        self.client = client
        self.prefix = prefix
        self.remember = remember_seconds
        self.closed_key = f"{prefix}:closed"
        self.due_key = f"{prefix}:due"
        self.close_script = client.register_script(_DEDUP_CLOSE)

    def close_due(self, limit: int = 1000) -> int:
        """Move the windows that closed with repeats to the closed set; returns how many moved."""
        seconds, micros = self.client.time()
        now_ms = seconds * 1000 + micros // 1000
        due = self.client.zrangebyscore(self.due_key, "-inf", now_ms, start=0, num=limit)
        if not due:
            return 0
        keys = [self.closed_key, self.due_key, *(k.decode() for k in due)]
        return int(self.close_script(keys=keys, args=[]))

    def pending(self, limit: int = 1000) -> list[tuple[str, dict[str, Any]]]:
        """Closed windows not yet forgotten (at most about ``limit``): (id, fields)."""
        found = []
        for window_id, raw in self.client.hscan_iter(self.closed_key, count=limit):
            found.append((window_id.decode(), orjson.loads(raw)))
            if len(found) >= limit:
                break
        return found

    def forget(self, window_ids: Sequence[str]) -> None:
        """The alerts of these closed windows are in the outbox: drop them."""
        if window_ids:
            self.client.hdel(self.closed_key, *window_ids)

    def flush(
        self,
        build: Callable[[str, dict[str, Any]], dict[str, Any]],
        publish: Callable[[list[dict[str, Any]]], None],
    ) -> list[dict[str, Any]]:
        """Publish one alert, ``build(id, fields)``, per window that closed holding something,
        then forget those windows; returns the alerts published.

        The alerts are in the outbox before the windows are forgotten: a flush killed in between
        publishes them again, with the same external_ids, which the forward task delivers once.
        """
        self.close_due()
        closed = self.pending()
        if not closed:
            return []
        alerts = [build(window_id, data) for window_id, data in closed]
        publish(alerts)
        self.forget([window_id for window_id, _ in closed])
        return alerts


class DedupWindows(ClosingWindows):
    """Dedup windows per fingerprint, shared by every worker on every host.

    :meth:`observe` decides which events of a batch repeat an alert forwarded within its window and
    counts them, atomically and idempotently per batch; :meth:`close_due` and :meth:`closed` hand
    the windows that closed with repeats to the flush job, which sends one update each and then
    calls :meth:`forget`.
    """

    def __init__(self, client: redis.Redis, prefix: str, remember_seconds: int) -> None:
        super().__init__(client, prefix, remember_seconds)
        self.script = client.register_script(_DEDUP)

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

    def closed(self, limit: int = 1000) -> list[ClosedWindow]:
        """Closed windows whose update has not been sent yet (at most about ``limit``)."""
        return [self.closed_window(window_id, data) for window_id, data in self.pending(limit)]

    @staticmethod
    def closed_window(window_id: str, data: dict[str, Any]) -> ClosedWindow:
        """A closed window from its id and fields (as :meth:`pending` gives them)."""
        return ClosedWindow(
            window_id=window_id,
            alert=orjson.loads(data["alert"]),
            count=int(data["count"]),
            last_at_ms=int(data.get("last_at") or 0),
            last_id=data.get("last_id") or "",
            window_seconds=int(data["window"]),
        )


# Storm budgets. KEYS[1] this batch's answer (idempotency; kept ARGV[1] seconds from each attempt),
# KEYS[2] the closed windows' hash, KEYS[3] the due set, then one window hash per scope (a device or
# a rule, in one lane). ARGV[1] how long to remember the batch's answer (seconds), ARGV[2] the
# window (seconds), ARGV[3] the number of scopes S, then per scope its budget and its label (JSON),
# then per alert, in the batch's order: its device scope and its rule scope (1-based, 0: that budget
# is off) and its message template. Returns, per alert, 'f' (forward) or 'h' (held over a budget).
# An alert is forwarded while both its scopes have sent fewer than their budgets in their current
# window, and then counts in both; a held one counts in the first scope that is full, with its
# template (field 'm:<template>'), for the summary. A window opens at its scope's first alert and
# closes W seconds later: one that held nothing just expires, one that held something is due and
# stays until the flush (or the next alert after it closed) moves it to KEYS[2].
_STORM = """
local memo = redis.call('GET', KEYS[1])
if memo then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  return cjson.decode(memo)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local span = tonumber(ARGV[2]) * 1000
local scopes = tonumber(ARGV[3])
local budget, sent, held, ready = {}, {}, {}, {}
local function open(i)
  if ready[i] then return end
  local key = KEYS[3 + i]
  local w = redis.call('HMGET', key, 'id', 'closes', 'count', 'sent')
  if w[1] and tonumber(w[2]) <= now then
    if tonumber(w[3]) > 0 then
      local fields = redis.call('HGETALL', key)
      local data = {}
      for j = 1, #fields, 2 do data[fields[j]] = fields[j + 1] end
      redis.call('HSET', KEYS[2], w[1], cjson.encode(data))
      redis.call('ZREM', KEYS[3], key)
    end
    redis.call('DEL', key)
    w[1] = false
  end
  if not w[1] then
    redis.call('HSET', key, 'id', key .. '@' .. now, 'opened', now, 'closes', now + span,
      'window', ARGV[2], 'count', 0, 'sent', 0, 'label', ARGV[3 + scopes + i])
    redis.call('PEXPIREAT', key, now + span)
    sent[i], held[i] = 0, 0
  else
    sent[i], held[i] = tonumber(w[4]), tonumber(w[3])
  end
  ready[i] = true
end
local results = {}
local base = 4 + 2 * scopes
for a = base, #ARGV, 3 do
  local d, r, template = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2]
  local full = 0
  for _, i in ipairs({d, r}) do
    if i > 0 then
      open(i)
      if full == 0 and sent[i] >= tonumber(ARGV[3 + i]) then full = i end
    end
  end
  if full == 0 then
    for _, i in ipairs({d, r}) do
      if i > 0 then sent[i] = sent[i] + 1 end
    end
    results[#results + 1] = 'f'
  else
    local key = KEYS[3 + full]
    if held[full] == 0 then
      redis.call('PERSIST', key)
      redis.call('ZADD', KEYS[3], redis.call('HGET', key, 'closes'), key)
    end
    held[full] = held[full] + 1
    redis.call('HINCRBY', key, 'm:' .. template, 1)
    results[#results + 1] = 'h'
  end
end
for i, _ in pairs(ready) do
  redis.call('HSET', KEYS[3 + i], 'sent', sent[i], 'count', held[i])
end
redis.call('SET', KEYS[1], cjson.encode(results), 'EX', ARGV[1])
return results
"""


@dataclass(frozen=True, slots=True)
class Budgeted:
    """One forwardable alert as the storm budgets see it."""

    device_scope: str | None  # None: the device budget is off
    rule_scope: str | None  # None: the rule budget is off
    template: str  # its message template, for the summary's top messages


class StormBudgets(ClosingWindows):
    """At most a budget of alerts per scope (device or rule) and window reach Moog.

    :meth:`observe` decides a batch atomically and idempotently (a redelivered batch gets its first
    answer again and counts nothing twice); the windows that held alerts go to the flush job, which
    sends one summary each.
    """

    def __init__(self, client: redis.Redis, prefix: str, remember_seconds: int) -> None:
        super().__init__(client, prefix, remember_seconds)
        self.script = client.register_script(_STORM)

    def window_key(self, scope: str) -> str:
        return f"{self.prefix}:window:{scope}"

    def observe(
        self,
        batch_key: str,
        alerts: Sequence[Budgeted],
        budgets: Mapping[str, int],
        labels: Mapping[str, bytes],
        window_seconds: int,
    ) -> list[bool]:
        """Which of ``alerts`` are held over a budget (True), in order.

        ``budgets`` and ``labels`` give each scope named by the alerts its budget and its label
        (JSON, kept in the window for the summary).
        """
        scopes: list[str] = []
        index: dict[str, int] = {}
        for alert in alerts:
            for scope in (alert.device_scope, alert.rule_scope):
                if scope is not None and scope not in index:
                    scopes.append(scope)
                    index[scope] = len(scopes)
        if not scopes:
            return [False] * len(alerts)
        keys = [
            f"{self.prefix}:batch:{batch_key}",
            self.closed_key,
            self.due_key,
            *(self.window_key(s) for s in scopes),
        ]
        args: list[Any] = [self.remember, window_seconds, len(scopes)]
        args += [budgets[s] for s in scopes]
        args += [labels[s] for s in scopes]
        for alert in alerts:
            args += [
                index.get(alert.device_scope or "", 0),
                index.get(alert.rule_scope or "", 0),
                alert.template,
            ]
        replies = self.script(keys=keys, args=args)
        return [(r.decode() if isinstance(r, bytes) else r) == "h" for r in replies]


# Flapping. KEYS[1] this batch's answer (idempotency; kept ARGV[1] seconds from each attempt),
# KEYS[2] the ended episodes' hash, KEYS[3] the due set, then one state hash per pair (host and
# problem rule). ARGV[1] how long to remember the batch's answer (seconds), ARGV[2] N transitions,
# ARGV[3] within M seconds, ARGV[4] quiet Q seconds, ARGV[5] the number of pairs P, then P alerts
# (JSON: the pair's alert in this batch), then per event, in order: its pair (1-based) and side ('p'
# problem, 'c' clear). Returns, per event, 'f' (forward), 'h' (held: its pair is flapping) or
# 'r:<transitions>:<episode id>' (this event's transition made the pair flap: hold it and raise the
# flapping alert).
# A transition is an event whose side differs from the pair's last one. Out of flapping, the
# transition times of the last M seconds are kept ('times'); the Nth opens an episode: 'id',
# 'started', 'count' (events held), 'flips' (transitions), 'closes' (last event + Q), in the due
# set. Every event of a flapping pair is held and pushes 'closes' on; once Q seconds pass with none,
# the flush (or the next event) moves the episode to KEYS[2] and the pair starts afresh.
_FLAP = """
local memo = redis.call('GET', KEYS[1])
if memo then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  return cjson.decode(memo)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n, within, quiet = tonumber(ARGV[2]), tonumber(ARGV[3]) * 1000, tonumber(ARGV[4]) * 1000
local pairs_n = tonumber(ARGV[5])
local results = {}
for a = 6 + pairs_n, #ARGV, 2 do
  local p, side = tonumber(ARGV[a]), ARGV[a + 1]
  local key = KEYS[3 + p]
  local s = redis.call('HMGET', key, 'id', 'closes', 'side', 'times')
  if s[1] and tonumber(s[2]) <= now then
    local fields = redis.call('HGETALL', key)
    local data = {}
    for j = 1, #fields, 2 do data[fields[j]] = fields[j + 1] end
    redis.call('HSET', KEYS[2], s[1], cjson.encode(data))
    redis.call('ZREM', KEYS[3], key)
    redis.call('DEL', key)
    s = {false, false, false, false}
  end
  local transition = s[3] and s[3] ~= side
  redis.call('HSET', key, 'side', side)
  if s[1] then
    redis.call('HINCRBY', key, 'count', 1)
    if transition then redis.call('HINCRBY', key, 'flips', 1) end
    redis.call('HSET', key, 'closes', now + quiet, 'last', now)
    redis.call('ZADD', KEYS[3], now + quiet, key)
    results[#results + 1] = 'h'
  else
    local kept = {}
    for time in string.gmatch(s[4] or '', '[^,]+') do
      if tonumber(time) > now - within then kept[#kept + 1] = time end
    end
    if transition then kept[#kept + 1] = tostring(now) end
    if #kept >= n then
      local id = key .. '@' .. now
      redis.call('HDEL', key, 'times')
      redis.call('HSET', key, 'id', id, 'started', now, 'last', now, 'closes', now + quiet,
        'count', 1, 'flips', #kept, 'window', ARGV[3], 'quiet', ARGV[4],
        'alert', ARGV[5 + p])
      redis.call('PERSIST', key)
      redis.call('ZADD', KEYS[3], now + quiet, key)
      results[#results + 1] = 'r:' .. #kept .. ':' .. id
    else
      redis.call('HSET', key, 'times', table.concat(kept, ','))
      redis.call('PEXPIRE', key, within)
      results[#results + 1] = 'f'
    end
  end
end
redis.call('SET', KEYS[1], cjson.encode(results), 'EX', ARGV[1])
return results
"""


@dataclass(frozen=True, slots=True)
class Transition:
    """One event of a problem/clear pair as the flap detector sees it."""

    pair: str  # host and problem rule, e.g. "core-sw-01:7"
    problem: bool  # True: the problem rule matched; False: the rule that clears it


@dataclass(frozen=True, slots=True)
class FlapVerdict:
    """What to do with one event: forward it, hold it, or hold it and raise the flapping alert."""

    held: bool
    raised: str | None = None  # the new episode's id
    transitions: int = 0  # at the raise: the transitions within the window


class FlapDetector(ClosingWindows):
    """Problem/clear pairs per host: N transitions within M seconds make a flapping episode, which
    holds every event of the pair until Q seconds pass without one; then the flush sends its end.
    """

    def __init__(self, client: redis.Redis, prefix: str, remember_seconds: int) -> None:
        super().__init__(client, prefix, remember_seconds)
        self.script = client.register_script(_FLAP)

    def pair_key(self, pair: str) -> str:
        return f"{self.prefix}:pair:{pair}"

    def observe(
        self,
        batch_key: str,
        events: Sequence[Transition],
        alerts: Mapping[str, bytes],
        *,
        transitions: int,
        within_seconds: int,
        quiet_seconds: int,
    ) -> list[FlapVerdict]:
        """The verdict for each of ``events`` (in order); ``alerts`` gives each pair's alert (JSON),
        kept in an episode for its end."""
        if not events:
            return []
        pairs: list[str] = []
        index: dict[str, int] = {}
        for event in events:
            if event.pair not in index:
                pairs.append(event.pair)
                index[event.pair] = len(pairs)
        keys = [
            f"{self.prefix}:batch:{batch_key}",
            self.closed_key,
            self.due_key,
            *(self.pair_key(p) for p in pairs),
        ]
        args: list[Any] = [self.remember, transitions, within_seconds, quiet_seconds, len(pairs)]
        args += [alerts[p] for p in pairs]
        for event in events:
            args += [index[event.pair], "p" if event.problem else "c"]
        verdicts = []
        for reply in self.script(keys=keys, args=args):
            text = reply.decode() if isinstance(reply, bytes) else reply
            if text.startswith("r:"):
                _, count, episode = text.split(":", 2)
                verdicts.append(FlapVerdict(True, episode, int(count)))
            else:
                verdicts.append(FlapVerdict(text == "h"))
        return verdicts


# Maintenance windows. KEYS[1] this batch's answers (a hash by correlation_id; kept ARGV[1] seconds
# from each attempt), KEYS[2] the closed occurrences' hash, KEYS[3] the due set, then one hash per
# occurrence (window id and start). ARGV[1] how long to remember the batch's answers (seconds),
# ARGV[2] the number of occurrences W, then per occurrence its id, its end (epoch ms) and its label
# (JSON), then per alert: its occurrence (1-based), correlation_id, host and the window's action.
# Returns, per alert, the action applied, or '' when the occurrence has ended by Redis' clock (its
# stored end, which "end now" may have moved earlier). An alert answered before gets that answer
# again, so a redelivered batch counts nothing twice. An occurrence's hash counts the alerts
# ('count') and each host ('h:<host>'); it is due at its end and stays until the flush moves it.
_MAINTENANCE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local w = tonumber(ARGV[2])
local results = {}
for a = 3 + 3 * w, #ARGV, 4 do
  local i, cid, host, action = tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local remembered = redis.call('HGET', KEYS[1], cid)
  if remembered then
    results[#results + 1] = remembered
  else
    local b = 3 + (i - 1) * 3
    local key = KEYS[3 + i]
    local closes = tonumber(redis.call('HGET', key, 'closes') or ARGV[b + 1])
    local answer = ''
    if closes > now then
      if redis.call('HSETNX', key, 'id', ARGV[b]) == 1 then
        redis.call('HSET', key, 'closes', ARGV[b + 1], 'label', ARGV[b + 2], 'count', 0)
        redis.call('ZADD', KEYS[3], ARGV[b + 1], key)
      end
      redis.call('HINCRBY', key, 'count', 1)
      redis.call('HINCRBY', key, 'h:' .. host, 1)
      answer = action
    end
    redis.call('HSET', KEYS[1], cid, answer)
    results[#results + 1] = answer
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return results
"""

# KEYS[1] the due set, KEYS[2] an occurrence's hash; ARGV[1] its new end (epoch ms). Only an
# occurrence still counting is moved (one the flush took already is gone). Returns 1 if moved.
_MAINTENANCE_RESCHEDULE = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'closes', ARGV[1])
  redis.call('ZADD', KEYS[1], 'XX', ARGV[1], KEYS[2])
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Windowed:
    """One alert an open maintenance window applies to, as :class:`MaintenanceCounts` counts it."""

    key: str  # "<window id>:<occurrence start, epoch ms>"
    closes_ms: int  # the occurrence's end
    correlation_id: str
    host: str
    action: str
    label: bytes  # JSON kept with the occurrence for its summary


class MaintenanceCounts(ClosingWindows):
    """What each maintenance-window occurrence held or downgraded, shared by every worker.

    :meth:`observe` records a batch's alerts atomically and idempotently; ended occurrences go to
    the flush job like any :class:`ClosingWindows`.
    """

    def __init__(self, client: redis.Redis, prefix: str, remember_seconds: int) -> None:
        super().__init__(client, prefix, remember_seconds)
        self.script = client.register_script(_MAINTENANCE)
        self.reschedule_script = client.register_script(_MAINTENANCE_RESCHEDULE)

    def window_key(self, occurrence: str) -> str:
        return f"{self.prefix}:window:{occurrence}"

    def observe(self, batch_key: str, alerts: Sequence[Windowed]) -> list[str]:
        """The action applied to each of ``alerts`` ('' if its occurrence has ended), in order."""
        if not alerts:
            return []
        occurrences: dict[str, int] = {}
        args_occ: list[Any] = []
        for alert in alerts:
            if alert.key not in occurrences:
                occurrences[alert.key] = len(occurrences) + 1
                args_occ += [alert.key, alert.closes_ms, alert.label]
        keys = [
            f"{self.prefix}:batch:{batch_key}",
            self.closed_key,
            self.due_key,
            *(self.window_key(k) for k in occurrences),
        ]
        args: list[Any] = [self.remember, len(occurrences), *args_occ]
        for alert in alerts:
            args += [occurrences[alert.key], alert.correlation_id, alert.host, alert.action]
        replies = self.script(keys=keys, args=args)
        return [r.decode() if isinstance(r, bytes) else r for r in replies]

    def occurrences_of(self, window_id: str) -> list[tuple[str, int]]:
        """The counting occurrences of one window: (hash key, start epoch ms)."""
        found = []
        for member, _ in self.client.zscan_iter(
            self.due_key, match=self.window_key(f"{window_id}:*")
        ):
            key = member.decode() if isinstance(member, bytes) else member
            found.append((key, int(key.rsplit(":", 1)[1])))
        return found

    def reschedule(self, key: str, closes_ms: int) -> int:
        """Make the occurrence at ``key`` end at ``closes_ms``; 1 if it was still counting."""
        return int(self.reschedule_script(keys=[self.due_key, key], args=[closes_ms]))
