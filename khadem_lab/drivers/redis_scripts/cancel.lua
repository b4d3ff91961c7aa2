-- ARGV: the id of a waiting (pending) job: taken off its queue and deleted; its fields returned,
-- or false if it is not waiting (unknown, reserved, dead, or its keys hold what the driver did
-- not write).
local id = ARGV[1]
local state, job = P .. STATE .. id, P .. JOB .. id
if kind(job) ~= 'string' then return false end
local st = {false, false, false}
if kind(state) == 'hash' then st = redis.call('HMGET', state, 'status', 'seq', 'queue')
elseif kind(state) ~= 'none' then return false end
if st[1] and st[1] ~= 'pending' then return false end
local queue = st[3]
if not queue then
  local ok, head = pcall(cjson.decode, string.match(redis.call('GET', job), '^[^\n]*'))
  if not ok or type(head) ~= 'table' or type(head[2]) ~= 'string' then return false end
  queue = head[2]
end
local list, zset, lt, zt = usable(queue, true)
if not list then return false end
local m = member(st[2] or id, id)
local found = zt == 'zset' and redis.call('ZREM', zset, m) == 1
if not found and lt == 'list' then
  for _, e in ipairs(redis.call('LRANGE', list, 0, -1)) do
    local _, em = entry(e)
    if em == m then
      redis.call('LREM', list, 1, e)
      found = true
      break
    end
  end
end
if not found then return false end
local out = fetch(id, true)
redis.call('DEL', job, state)
return out
