-- Release the remediation lock KEYS[1] only if ARGV[1], the token of the run that took it, still
-- holds it: a run that outlived its lock must not free another run's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
