-- Inspection (khadem-lab jobs). ARGV: now, state ('ready', 'delayed' or 'reserved'). Read only;
-- the client orders what it gets.
local now, state = tonumber(ARGV[1]), ARGV[2]
local out = {}
local function add(m)
  local id = id_of(m)
  if id then out[#out + 1] = fetch(id) end
end
if state == 'reserved' then
  for _, m in ipairs(redis.call('ZRANGE', RESERVED, 0, -1)) do add(m) end
  return out
end
local due = state == 'ready'
for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
  local list, zset, lt, zt = usable(queue, true)
  if list and zt == 'zset' then
    local members
    if due then members = redis.call('ZRANGEBYSCORE', zset, '-inf', ARGV[1])
    else members = redis.call('ZRANGEBYSCORE', zset, '(' .. ARGV[1], '+inf') end
    for _, m in ipairs(members) do add(m) end
  end
  if list and lt == 'list' then
    for _, e in ipairs(redis.call('LRANGE', list, 0, -1)) do
      local at, m = entry(e)
      if at and ((tonumber(at) <= now) == due) then add(m) end
    end
  end
end
return out
