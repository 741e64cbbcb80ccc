-- Admits one attempt on a key if failures and attempts in flight leave room.
-- KEYS[1]: failure count (expires with the window), KEYS[2]: attempts in flight.
-- ARGV[1]: max failures, ARGV[2]: in-flight expiry (ms; a node that died mid-attempt).
-- Returns 1 when admitted, 0 to wait, or minus the lock-out's time left in ms.
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
local max = tonumber(ARGV[1])
if failures >= max then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then return -ttl end
  redis.call('DEL', KEYS[1])
  failures = 0
end
local in_flight = tonumber(redis.call('GET', KEYS[2]) or '0')
if failures + in_flight >= max then return 0 end
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
