local existing = redis.call('HMGET', KEYS[1], 'epoch', 'offset')
if existing[1] then return {existing[1], existing[2], 0} end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], 'epoch', ARGV[2], 'offset', ARGV[1])
return {ARGV[2], ARGV[1], 1}
