-- Dedup windows (mutt_app.holdback.dedup.DedupWindows). KEYS[1] this batch's memo (by window key),
-- KEYS[2] the hash of closed windows awaiting their update, KEYS[3] the sorted set of windows with
-- repeats (by closing time), then one window hash per fingerprint of the batch. ARGV[1] how long to
-- remember the batch's answers (seconds), then six per fingerprint, in KEYS order: the
-- correlation_id of its first event in the batch, its number of events, the last one's time (epoch
-- ms) and correlation_id, the window (seconds), and the first event's alert (JSON). Returns, per
-- fingerprint, "1:<id>" when its first event opened a window (forward it; the rest repeat it) or
-- "0:<id>" when all of them repeat the open window <id>.
-- A fingerprint of a batch seen before gets its first answer again, so a redelivered batch counts
-- nothing twice. A window without repeats expires when it closes; one with repeats stays until it
-- is moved to KEYS[2], by the flush or by the next event after it closed, so no count is lost to
-- expiry.
local now = now_ms()
local results = {}
for i = 4, #KEYS do
  local a = 2 + (i - 4) * 6
  local id, n, last_at, last_id = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3]
  local window, alert = tonumber(ARGV[a + 4]), ARGV[a + 5]
  local key = KEYS[i]
  local remembered = recall(key)
  if remembered then
    results[#results + 1] = remembered
  else
    local open = redis.call('HMGET', key, 'id', 'closes', 'count')
    if open[1] and tonumber(open[2]) <= now then
      close_window(KEYS[2], KEYS[3], key, open[1], open[3])
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
    remember(key, results[#results])
  end
end
renew_memo()
return results
