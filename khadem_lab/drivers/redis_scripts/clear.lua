-- ARGV: none. Removes every waiting and reserved job (not the dead letters); returns how many.
-- Keys that hold what the driver did not write are left as they are.
local n = 0
local function drop(m)
  local id = m and id_of(m)
  if not id then return end
  n = n + redis.call('DEL', P .. JOB .. id)
  redis.call('DEL', P .. STATE .. id)
end
local keys = {RESERVED}
for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
  local list, zset, lt, zt = usable(queue, true)
  if list then
    if zt == 'zset' then keys[#keys + 1] = zset end
    if lt == 'list' then
      for _, e in ipairs(redis.call('LRANGE', list, 0, -1)) do
        local _, m = entry(e)
        drop(m)
      end
      redis.call('DEL', list)
    end
  end
end
for _, key in ipairs(keys) do
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do drop(m) end
  redis.call('DEL', key)
end
redis.call('DEL', QUEUES)
return n
