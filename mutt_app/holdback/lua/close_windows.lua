-- Any ClosingWindows (mutt_app.holdback.closing: dedup, storm budgets, flapping, maintenance).
-- KEYS[1] the closed windows' hash, KEYS[2] the sorted set of windows that held something, then
-- window hashes that were due. Each one that has closed moves to KEYS[1] (if it held something)
-- and leaves KEYS[2]; one that is gone already just leaves KEYS[2]. Returns how many moved.
local now = now_ms()
local moved = 0
for i = 3, #KEYS do
  local key = KEYS[i]
  local open = redis.call('HMGET', key, 'id', 'closes', 'count')
  if not open[1] then
    redis.call('ZREM', KEYS[2], key)
  elseif tonumber(open[2]) <= now then
    moved = moved + close_window(KEYS[1], KEYS[2], key, open[1], open[3])
  end
end
return moved
