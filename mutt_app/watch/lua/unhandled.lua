-- Unmatched events per host (mutt_app.watch.unhandled_hosts.UnhandledCounter). KEYS[1] the host's
-- counter, KEYS[2] its triggered marker; ARGV increment, threshold, window seconds. Returns the count
-- that crossed the threshold, or 0. Renaming the counter to the marker (which keeps its TTL) means
-- the rest of the window finds the marker and raises nothing more.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
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
