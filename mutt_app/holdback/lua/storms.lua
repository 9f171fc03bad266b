-- Storm budgets (mutt_app.holdback.storms.StormBudgets). KEYS[1] this batch's memo (the whole
-- batch's answer), KEYS[2] the closed windows' hash, KEYS[3] the due set, then one window hash per
-- scope (a device or a rule, in one lane). ARGV[1] how long to remember the batch's answer
-- (seconds), ARGV[2] the window (seconds), ARGV[3] how many templates a window keeps, ARGV[4] the
-- number of scopes S, then per scope its budget and its label (JSON), then per alert, in the batch's order: its device scope and its rule
-- scope (1-based, 0: that budget is off) and its message template. Returns, per alert, 'f'
-- (forward) or 'h' (held over a budget).
-- An alert is forwarded while both its scopes have sent fewer than their budgets in their current
-- window, and then counts in both; a held one counts in the first scope that is full, with its
-- template (field 'm:<template>'), for the summary; past ARGV[3] distinct templates ('templates')
-- a held alert of a new one is counted in 'other' instead, so a sender inventing messages cannot
-- grow a window. A window opens at its scope's first alert and
-- closes W seconds later: one that held nothing just expires, one that held something is due and
-- stays until the flush (or the next alert after it closed) moves it to KEYS[2].
local answered = recall_batch()
if answered then
  return answered
end
local now = now_ms()
local span = tonumber(ARGV[2]) * 1000
local keep = tonumber(ARGV[3])
local scopes = tonumber(ARGV[4])
local sent, held, ready = {}, {}, {}
local function open(i)
  if ready[i] then return end
  local key = KEYS[3 + i]
  local w = redis.call('HMGET', key, 'id', 'closes', 'count', 'sent')
  if w[1] and tonumber(w[2]) <= now then
    close_window(KEYS[2], KEYS[3], key, w[1], w[3])
    w[1] = false
  end
  if not w[1] then
    redis.call('HSET', key, 'id', key .. '@' .. now, 'opened', now, 'closes', now + span,
      'window', ARGV[2], 'count', 0, 'sent', 0, 'label', ARGV[4 + scopes + i])
    redis.call('PEXPIREAT', key, now + span)
    sent[i], held[i] = 0, 0
  else
    sent[i], held[i] = tonumber(w[4]), tonumber(w[3])
  end
  ready[i] = true
end
local results = {}
local base = 5 + 2 * scopes
for a = base, #ARGV, 3 do
  local d, r, template = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2]
  local full = 0
  for _, i in ipairs({d, r}) do
    if i > 0 then
      open(i)
      if full == 0 and sent[i] >= tonumber(ARGV[4 + i]) then full = i end
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
    local field = 'm:' .. template
    if redis.call('HEXISTS', key, field) == 1
        or tonumber(redis.call('HGET', key, 'templates') or '0') < keep then
      if redis.call('HINCRBY', key, field, 1) == 1 then redis.call('HINCRBY', key, 'templates', 1) end
    else
      redis.call('HINCRBY', key, 'other', 1)
    end
    results[#results + 1] = 'h'
  end
end
for i, _ in pairs(ready) do
  redis.call('HSET', KEYS[3 + i], 'sent', sent[i], 'count', held[i])
end
return remember_batch(results)
