-- ARGV: the queues (none: all). The earliest available_at among their waiting jobs (as stored, a
-- string with every digit), or nil. Changes nothing.
local queues = {}
for i = 1, #ARGV do queues[#queues + 1] = ARGV[i] end
if #ARGV == 0 then queues = redis.call('SMEMBERS', QUEUES) end
local best, best_at = nil, nil
local function consider(at)
  if at and (not best or tonumber(at) < best) then best, best_at = tonumber(at), at end
end
for _, queue in ipairs(queues) do
  local list, zset, lt, zt = usable(queue, true)
  if list and zt == 'zset' then consider(redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')[2]) end
  if list and lt == 'list' then
    local head = redis.call('LINDEX', list, 0)
    if head then consider((entry(head))) end
  end
end
return best_at
