-- Flapping (mutt_app.holdback.flapping.FlapDetector). KEYS[1] this batch's memo (the whole batch's
-- answer), KEYS[2] the ended episodes' hash, KEYS[3] the due set, then one state hash per pair (host
-- and problem rule). ARGV[1] how long to remember the batch's answer (seconds), ARGV[2] N
-- transitions, ARGV[3] within M seconds, ARGV[4] quiet Q seconds, ARGV[5] the number of pairs P,
-- then P alerts (JSON: the pair's alert in this batch), then per event, in order: its pair
-- (1-based) and side ('p' problem, 'c' clear). Returns, per event, 'f' (forward), 'h' (held: its
-- pair is flapping) or 'r:<transitions>:<episode id>' (this event's transition made the pair flap:
-- hold it and raise the flapping alert).
-- A transition is an event whose side differs from the pair's last one. Out of flapping, the
-- transition times of the last M seconds are kept ('times'); the Nth opens an episode: 'id',
-- 'started', 'count' (events held), 'flips' (transitions), 'closes' (last event + Q), in the due
-- set. Every event of a flapping pair is held and pushes 'closes' on; once Q seconds pass with none,
-- the flush (or the next event) moves the episode to KEYS[2] and the pair starts afresh.
local answered = recall_batch()
if answered then
  return answered
end
local now = now_ms()
local n, within, quiet = tonumber(ARGV[2]), tonumber(ARGV[3]) * 1000, tonumber(ARGV[4]) * 1000
local pairs_n = tonumber(ARGV[5])
local results = {}
for a = 6 + pairs_n, #ARGV, 2 do
  local p, side = tonumber(ARGV[a]), ARGV[a + 1]
  local key = KEYS[3 + p]
  local s = redis.call('HMGET', key, 'id', 'closes', 'side', 'times', 'count')
  if s[1] and tonumber(s[2]) <= now then
    -- An episode holds at least the event that opened it ('count' starts at 1), so it moves.
    close_window(KEYS[2], KEYS[3], key, s[1], s[5])
    s = {false, false, false, false, false}
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
return remember_batch(results)
