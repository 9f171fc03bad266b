-- Sliding-window log (mutt_app.forwarding.limiter.RateLimiter.acquire). KEYS[1] the window's sorted
-- set, KEYS[2] the caller's lane's waiting line tail (ms); ARGV window seconds, the lane's cap (the
-- slots of the window this request may fill), a unique member, seconds the request may stay in
-- flight, the longest wait to hand out (seconds). Returns {1, 0} when admitted, else
-- {0, milliseconds to wait}.
-- An admitted request is scored at the end of its longest possible flight; rate_finish.lua re-scores
-- it when its response arrives. The window therefore counts every request that was in flight at any
-- moment of the last period, so the receiver, whatever the network delay, never sees more than the
-- limit within one period. Time comes from the Redis server: workers with skewed clocks share it.
-- Lanes share the window but not the cap: pages may fill all of it, tickets only what is not
-- reserved for pages, so tickets alone never take the pages' share.
-- A refused request joins its lane's waiting line: each gets a turn one slot-interval (window / cap)
-- after the last, so a backlog of N comes back spread over N / cap periods instead of all at once
-- every period, and a page never waits behind the tickets' line.
local now = now_ms()
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
