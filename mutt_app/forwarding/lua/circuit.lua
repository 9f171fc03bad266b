-- Circuit breaker shared in Redis (mutt_app.forwarding.breaker.CircuitBreaker). KEYS: state,
-- failures, opened_at (ms), probe lock. ARGV[1] the operation: 'allow', 'success' or 'failure';
-- ARGV[2] threshold; ARGV[3] open seconds. 'allow' returns {allowed, wait_ms, state}; the others
-- return {0, 0, state}.
local now = now_ms()
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
