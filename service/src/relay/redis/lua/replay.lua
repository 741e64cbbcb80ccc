local meta = redis.call('HMGET', KEYS[1], 'epoch', 'offset')
if meta[1] ~= ARGV[1] then return false end
local last = tonumber(meta[2])
local first = last + 1
local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #oldest > 0 then first = tonumber(string.match(oldest[1][1], '^(%d+)')) end
local floor = last - tonumber(ARGV[4]) + 1
if floor > first then first = floor end
local from = tonumber(ARGV[2]) + 1
if first > from then from = first end
local to = tonumber(ARGV[3])
local entries = {}
if from <= to then
  entries = redis.call('XRANGE', KEYS[2], string.format('%d-0', from), string.format('%d-0', to))
end
return {first, entries}
