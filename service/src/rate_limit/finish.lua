-- Ends an attempt admitted by try_begin.lua.
-- KEYS[1]: failure count, KEYS[2]: attempts in flight.
-- ARGV[1]: 1 if the attempt failed, ARGV[2]: the failure window (ms).
local in_flight = tonumber(redis.call('GET', KEYS[2]) or '0')
if in_flight > 0 then redis.call('DECR', KEYS[2]) end
if ARGV[1] == '1' then
  local n = redis.call('INCR', KEYS[1])
  if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  return n
end
return 0
