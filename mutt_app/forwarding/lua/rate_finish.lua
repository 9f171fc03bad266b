-- A request admitted by rate_limit.lua got its answer (RateLimiter.finish). KEYS[1] the window's
-- sorted set; ARGV[1] the member. XX: a member that has already left the window is not brought back.
redis.call('ZADD', KEYS[1], 'XX', now_ms(), ARGV[1])
return 1
