-- MUTT's shared prelude (mutt_app/lua/prelude.lua), prepended to every script by
-- mutt_app/lua/loader.py. A script is one Lua chunk, so these locals are private to it.

-- Now in epoch milliseconds, by the Redis server's clock: workers with skewed clocks share it.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Closing windows (mutt_app.holdback.closing.ClosingWindows). A window is a hash with at least
-- 'id', 'closes' (epoch ms) and 'count' (what it held); one that held something is in the due set
-- and never expires. Once it has closed, its fields move, as JSON, to the closed hash under its id
-- (only if it held something), and it leaves the due set and Redis. Returns 1 if it moved, else 0.
local function close_window(closed, due, key, id, count)
  local moved = 0
  if tonumber(count) > 0 then
    local fields = redis.call('HGETALL', key)
    local data = {}
    for j = 1, #fields, 2 do data[fields[j]] = fields[j + 1] end
    redis.call('HSET', closed, id, cjson.encode(data))
    moved = 1
  end
  redis.call('ZREM', due, key)
  redis.call('DEL', key)
  return moved
end

-- Batch memos: how a script answers a redelivered batch as it answered it the first time, so the
-- batch counts nothing twice. KEYS[1] is a hash of the answers given to the batch, by item (an
-- alert, a window), kept ARGV[1] seconds from each attempt. A script that answers the batch as a
-- whole keeps that answer, as JSON, under the item BATCH.
local BATCH = '*'

local function recall(item)
  return redis.call('HGET', KEYS[1], item)
end

local function remember(item, answer)
  redis.call('HSET', KEYS[1], item, answer)
end

local function renew_memo()
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end

-- The whole batch's answer if it was given before (the memo is renewed), else nil.
local function recall_batch()
  local memo = recall(BATCH)
  if memo then
    renew_memo()
    return cjson.decode(memo)
  end
  return nil
end

-- Keep ``answers`` as the whole batch's answer; returns them.
local function remember_batch(answers)
  remember(BATCH, cjson.encode(answers))
  renew_memo()
  return answers
end
