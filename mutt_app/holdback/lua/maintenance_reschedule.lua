-- Maintenance windows, "end now" or a new schedule (MaintenanceCounts.reschedule). KEYS[1] the due
-- set, KEYS[2] an occurrence's hash; ARGV[1] its new end (epoch ms). Only an occurrence still
-- counting is moved (one the flush took already is gone). Returns 1 if moved.
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'closes', ARGV[1])
  redis.call('ZADD', KEYS[1], 'XX', ARGV[1], KEYS[2])
  return 1
end
return 0
