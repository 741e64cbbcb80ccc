local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {'uninit'} end
local window = tonumber(ARGV[1])
if ARGV[2] ~= '' then
  local previous = redis.call('ZSCORE', KEYS[3], ARGV[2])
  if previous then
    local id = string.format('%d-0', tonumber(previous))
    local found = redis.call('XRANGE', KEYS[2], id, id)
    if #found > 0 then return {'dup', epoch, found[1]} end
  end
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', window, string.format('%d-0', offset),
  'epoch', epoch, unpack(ARGV, 4))
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[3], offset, ARGV[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', offset - window)
-- Every node hears it on the room's channel, in offset order (scripts run one at a time).
redis.call('PUBLISH', KEYS[4], '{"kind":"message","epoch":' .. cjson.encode(epoch) ..
  ',"offset":' .. string.format('%d', offset) .. ',"fields":' .. ARGV[3] .. '}')
return {'new', epoch, offset}
