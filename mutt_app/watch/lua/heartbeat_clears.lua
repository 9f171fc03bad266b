-- Clear the quiet-host entries of KEYS[1] (a hash) named in ARGV as (field, expected value)
-- pairs, each only if it still holds the value the check read: a host that went quiet again, or a
-- check that ran meanwhile, keeps its entry. Returns 1 or 0 per pair, in order.
local done = {}
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    done[#done + 1] = 1
  else
    done[#done + 1] = 0
  end
end
return done
