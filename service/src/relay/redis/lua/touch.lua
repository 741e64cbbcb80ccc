local ttl = tonumber(ARGV[3])
local deadline = now + ttl
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local others = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then others = others - 1 end
redis.call('ZADD', KEYS[1], deadline, ARGV[2])
redis.call('ZADD', KEYS[2], 'GT', deadline, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
for _, key in ipairs(KEYS) do
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
if others == 0 then return 1 end
return 0
