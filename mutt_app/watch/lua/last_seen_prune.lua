-- Bounds the last-seen sorted set (mutt_app.watch.last_seen.prune_last_seen). KEYS[1] the set;
-- ARGV cutoff (epoch ms: members scored below it are dropped), the most members kept, the most
-- removed by this call (so that one call never blocks Redis for long). The lowest scores are the
-- oldest, so both drops are rank ranges from 0. Returns {aged, overflow}: how many each dropped.
local chunk = tonumber(ARGV[3])
local aged = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[1])
if aged > chunk then
  aged = chunk
end
if aged > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, aged - 1)
end
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2])
if over > chunk - aged then
  over = chunk - aged
end
if over > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, over - 1)
else
  over = 0
end
return {aged, over}
