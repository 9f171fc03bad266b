-- Maintenance windows (mutt_app.holdback.window_counts.MaintenanceCounts). KEYS[1] this batch's
-- memo (by correlation_id), KEYS[2] the closed occurrences' hash, KEYS[3] the due set, then one
-- hash per occurrence (window id and start). ARGV[1] how long to remember the batch's answers
-- (seconds), ARGV[2] how many hosts an occurrence counts, ARGV[3] the number of occurrences W, then per occurrence its id, its end (epoch ms) and
-- its label (JSON), then per alert: its occurrence (1-based), correlation_id, host and the window's
-- action. Returns, per alert, the action applied, or '' when the occurrence has ended by Redis'
-- clock (its stored end, which "end now" may have moved earlier). An alert answered before gets
-- that answer again, so a redelivered batch counts nothing twice. An occurrence's hash counts the
-- alerts ('count') and each host ('h:<host>', 'hosts' of them): past ARGV[2] hosts, an alert of a
-- new host counts in 'other' instead, so a window over invented hosts cannot grow its hash. It is
-- due at its end and stays until the flush moves it.
local now = now_ms()
local keep = tonumber(ARGV[2])
local w = tonumber(ARGV[3])
local results = {}
for a = 4 + 3 * w, #ARGV, 4 do
  local i, cid, host, action = tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local remembered = recall(cid)
  if remembered then
    results[#results + 1] = remembered
  else
    local b = 4 + (i - 1) * 3
    local key = KEYS[3 + i]
    local closes = tonumber(redis.call('HGET', key, 'closes') or ARGV[b + 1])
    local answer = ''
    if closes > now then
      if redis.call('HSETNX', key, 'id', ARGV[b]) == 1 then
        redis.call('HSET', key, 'closes', ARGV[b + 1], 'label', ARGV[b + 2], 'count', 0)
        redis.call('ZADD', KEYS[3], ARGV[b + 1], key)
      end
      redis.call('HINCRBY', key, 'count', 1)
      local field = 'h:' .. host
      if redis.call('HEXISTS', key, field) == 1
          or tonumber(redis.call('HGET', key, 'hosts') or '0') < keep then
        if redis.call('HINCRBY', key, field, 1) == 1 then redis.call('HINCRBY', key, 'hosts', 1) end
      else
        redis.call('HINCRBY', key, 'other', 1)
      end
      answer = action
    end
    remember(cid, answer)
    results[#results + 1] = answer
  end
end
renew_memo()
return results
