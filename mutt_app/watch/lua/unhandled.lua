-- Unmatched events per host (mutt_app.watch.unhandled_hosts.UnhandledCounter). KEYS[1] the host's
-- counter, KEYS[2] its triggered marker, KEYS[3] how many hosts got a counter in this window;
-- ARGV increment, threshold, window seconds, most hosts per window. Returns the count that
-- crossed the threshold, 0, or for a host past the cap -1 (-2 for the first one in its window, so
-- the worker logs the cap once). Renaming the counter to the marker (which keeps its TTL) means
-- the rest of the window finds the marker and raises nothing more.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  local hosts = redis.call('INCR', KEYS[3])
  if hosts == 1 then
    redis.call('EXPIRE', KEYS[3], ARGV[3])
  end
  if hosts > tonumber(ARGV[4]) then
    if hosts == tonumber(ARGV[4]) + 1 then
      return -2
    end
    return -1
  end
end
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
if count == tonumber(ARGV[1]) then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
if count >= tonumber(ARGV[2]) then
  redis.call('RENAME', KEYS[1], KEYS[2])
  return count
end
return 0
