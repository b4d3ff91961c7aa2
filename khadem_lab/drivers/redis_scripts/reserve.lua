-- ARGV: now, lease seconds, worker (optional), then the queues in priority order (none: all
-- queues, by (available_at, seq) across them). Returns nil, or the reserved job's fields (false
-- when none was reserved) followed by the notes on what was taken aside.
local now = ARGV[1]
-- the first due job of a queue: its member, available_at, whether it heads the ready list, keys
local function due(queue)
  local list, zset, lt, zt = usable(queue)
  if not list then return nil end
  local m, at, listed = nil, nil, false
  while lt == 'list' do
    local head = redis.call('LINDEX', list, 0)
    if not head then break end
    local a, hm = entry(head)
    if a then
      if tonumber(a) <= tonumber(now) then m, at, listed = hm, a, true end
      break
    end
    redis.call('LPOP', list)
    note_entry(list, head)
  end
  while zt == 'zset' do
    local z = redis.call('ZRANGEBYSCORE', zset, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
    if not z[1] then break end
    if id_of(z[1]) then
      if not m or before(z[2], z[1], at, m) then m, at, listed = z[1], z[2], false end
      break
    end
    redis.call('ZREM', zset, z[1])
    note_entry(zset, z[1])
  end
  return m, at, listed, list, zset
end
-- take member m off its queue; reserve its job, or nil if the job is gone (keys removed by hand)
-- or its keys hold what the driver did not write (then it is dead-lettered as it is)
local function claim(queue, m, listed, list, zset)
  local id = id_of(m)
  local job, state = P .. JOB .. id, P .. STATE .. id
  local jt, st = kind(job), kind(state)  -- before anything changes
  if listed then redis.call('LPOP', list) else redis.call('ZREM', zset, m) end
  if redis.call('EXISTS', list, zset) == 0 then redis.call('SREM', QUEUES, queue) end
  if jt == 'none' then return nil end
  local what = nil
  if st == 'hash' then
    local status, attempts = unpack(redis.call('HMGET', state, 'status', 'attempts'))
    if status == 'reserved' or status == 'dead' then return nil end  -- an old entry of the job
    if status and status ~= 'pending' then what = state .. ' has status ' .. string.format('%q', status)
    elseif attempts and not string.match(attempts, '^%d+$') then
      what = state .. ' has attempts ' .. string.format('%q', string.sub(attempts, 1, 40))
    end
  end
  if what or jt ~= 'string' or (st ~= 'hash' and st ~= 'none') then
    if not what then what = job .. ' holds a ' .. jt .. ', not a string' end
    if jt == 'string' and st ~= 'hash' then
      what = state .. ' holds a ' .. st .. ', not a hash'
      if st == 'string' then
        what = what .. ' (' .. string.format('%q', string.sub(redis.call('GET', state), 1, 80)) .. ')'
      end
    end
    bury_as_is(id, queue, 'StorageError: ' .. what .. ', so the job was dead-lettered as it was; '
      .. 'the state was reset: requeue it to run it', now)
    return nil
  end
  local body = redis.call('GET', job)
  local timeout = tonumber(string.match(body, '^%[([^,]*),') or '') or 0
  local untl = string.format('%.17g', tonumber(now) + tonumber(ARGV[2]) + timeout)
  redis.call('HINCRBY', state, 'attempts', 1)
  -- the seq is the id for a job dispatched without job_id; any other keeps its member's seq
  if not string.match(id, '^%d+$') and not redis.call('HGET', state, 'seq') then
    redis.call('HSET', state, 'seq', string.format('%d', tonumber(string.sub(m, 1, 20))))
  end
  if ARGV[3] == '' then
    redis.call('HSET', state, 'status', 'reserved', 'reserved_until', untl, 'queue', queue)
  else
    redis.call('HSET', state, 'status', 'reserved', 'reserved_until', untl, 'queue', queue,
      'reserved_by', string.sub(ARGV[3], 2))
  end
  redis.call('ZADD', RESERVED, untl, m)
  return fetch(id, true)
end
local function reply(fields)
  if #NOTES == 0 then return fields end
  if not fields then fields = {}; for i = 1, #FIELDS + 2 do fields[i] = false end end
  for _, text in ipairs(NOTES) do fields[#fields + 1] = text end
  return fields
end
if #ARGV == 3 then
  while true do
    local best, best_at, best_queue, best_listed, best_list, best_zset = nil, nil, nil, false, nil, nil
    for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
      local m, at, listed, list, zset = due(queue)
      if m and (not best or before(at, m, best_at, best)) then
        best, best_at, best_queue, best_listed, best_list, best_zset = m, at, queue, listed, list, zset
      end
    end
    if not best then return reply(nil) end
    local found = claim(best_queue, best, best_listed, best_list, best_zset)
    if found then return reply(found) end
  end
end
for i = 4, #ARGV do
  while true do
    local m, _, listed, list, zset = due(ARGV[i])
    if not m then break end
    local found = claim(ARGV[i], m, listed, list, zset)
    if found then return reply(found) end
  end
end
return reply(nil)
