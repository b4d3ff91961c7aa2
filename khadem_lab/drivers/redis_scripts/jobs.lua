-- The job steps a worker's slot takes between jobs, as functions: ack a finished job, bring back the
-- jobs whose lease ended, reserve the next job. ack.lua, reclaim.lua and reserve.lua each run one of
-- them; take.lua runs them all in one call (one round trip, one check of the fixed keys). A job's
-- keys and a queue's are read with redis.pcall before anything is written, so a key that holds
-- another type is seen by the read (its TYPE is asked only then, for the message) instead of by a
-- TYPE before every read.
local function failed(reply) return type(reply) == 'table' and reply.err ~= nil end

-- 1 if the reservation (id, attempts) was the current one and is now acknowledged, else 0
local function ack_job(id, attempts)
  local state = P .. STATE .. id
  local current = redis.pcall('HMGET', state, 'status', 'attempts', 'seq')
  if failed(current) or current[1] ~= 'reserved' or current[2] ~= attempts then return 0 end
  redis.call('ZREM', RESERVED, member(current[3] or id, id))
  redis.call('DEL', P .. JOB .. id, state)
  return 1
end

-- The fields of each job whose lease ended by now, in (reserved_until, seq) order, which is also the
-- order they get their new seqs in. A job whose header cannot be read counts as having no retries
-- left; one whose queue's keys hold another type is dead-lettered.
local function max_retries(body)
  local ok, head = pcall(cjson.decode, string.match(body or '', '^[^\n]*'))
  if ok and type(head) == 'table' then return tonumber(head[5]) or 0 end
  return 0
end
local function reclaim_expired(now, message)
  local out = {}
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', RESERVED, '-inf', now)) do
    redis.call('ZREM', RESERVED, m)
    local id = id_of(m)
    local state = P .. STATE .. (id or '')
    if not id then
      note_entry(RESERVED, m)
    elseif kind(state) == 'hash' then
      local current = redis.call('HMGET', state, 'status', 'attempts', 'queue')
      if current[1] == 'reserved' then
        local job = P .. JOB .. id
        local body = kind(job) == 'string' and redis.call('GET', job) or nil
        local queue = current[3] or ''
        local ok, why = usable(queue, true)
        local new = take_seq()
        redis.call('HDEL', state, 'reserved_until', 'reserved_by')
        if not ok then
          redis.call('HSET', state, 'status', 'dead', 'seq', new, 'last_error', 'StorageError: ' .. why
            .. ', so the job could not go back to its queue', 'error_type', 'StorageError', 'failed_at', now)
          redis.call('ZADD', DEAD, new, id)
        elseif tonumber(current[2]) >= max_retries(body) + 1 then
          redis.call('HSET', state, 'status', 'dead', 'seq', new, 'last_error', message,
            'error_type', 'LeaseExpired', 'failed_at', now)
          redis.call('ZADD', DEAD, new, id)
        else
          redis.call('HSET', state, 'status', 'pending', 'seq', new, 'available_at', now)
          enqueue(id, queue, now, new)
        end
        out[#out + 1] = fetch(id)
      end
    end
  end
  return out
end

-- the first due job of a queue: its member, available_at, whether it heads the ready list, keys
local function due(queue, now)
  local list, zset = P .. READY .. enc(queue), P .. WAITING .. enc(queue)
  local z = redis.pcall('ZRANGEBYSCORE', zset, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
  local head = not failed(z) and redis.pcall('LINDEX', list, 0)
  if failed(z) or failed(head) then
    usable(queue)  -- reports the key in the way (once) and takes the queue off `queues`
    return nil
  end
  local m, at, listed = nil, nil, false
  while head do
    local a, hm = entry(head)
    if a then
      if tonumber(a) <= tonumber(now) then m, at, listed = hm, a, true end
      break
    end
    redis.call('LPOP', list)
    note_entry(list, head)
    head = redis.call('LINDEX', list, 0)
  end
  while z[1] do
    if id_of(z[1]) then
      if not m or before(z[2], z[1], at, m) then m, at, listed = z[1], z[2], false end
      break
    end
    redis.call('ZREM', zset, z[1])
    note_entry(zset, z[1])
    z = redis.call('ZRANGEBYSCORE', zset, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
  end
  return m, at, listed, list, zset
end

-- take member m off its queue; reserve its job (its fields, as fetch gives them), or nil if the job
-- is gone (keys removed by hand) or its keys hold what the driver did not write (then it is
-- dead-lettered as it is)
local function claim(queue, m, listed, list, zset, now, lease, worker)
  local id = id_of(m)
  local job, state = P .. JOB .. id, P .. STATE .. id
  local body = redis.pcall('GET', job)  -- both read before anything changes
  local fields = redis.pcall('HMGET', state, unpack(FIELDS))
  if listed then redis.call('LPOP', list) else redis.call('ZREM', zset, m) end
  if redis.call('EXISTS', list, zset) == 0 then redis.call('SREM', QUEUES, queue) end
  if body == false then return nil end
  local what = nil
  local status, attempts = nil, nil
  if not failed(fields) then
    status, attempts = fields[4], fields[3]
    if status == 'reserved' or status == 'dead' then return nil end  -- an old entry of the job
    if status and status ~= 'pending' then what = state .. ' has status ' .. string.format('%q', status)
    elseif attempts and not string.match(attempts, '^%d+$') then
      what = state .. ' has attempts ' .. string.format('%q', string.sub(attempts, 1, 40))
    end
  end
  if what or failed(body) or failed(fields) then
    local jt, st = kind(job), kind(state)
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
  local timeout = tonumber(string.match(body, '^%[([^,]*),') or '') or 0
  local untl = string.format('%.17g', tonumber(now) + tonumber(lease) + timeout)
  attempts = string.format('%d', tonumber(attempts or '0') + 1)
  local sets = {'attempts', attempts, 'status', 'reserved', 'reserved_until', untl, 'queue', queue}
  -- the seq is the id for a job dispatched without job_id; any other keeps its member's seq
  if not string.match(id, '^%d+$') and not fields[1] then
    fields[1] = string.format('%d', tonumber(string.sub(m, 1, 20)))
    sets[#sets + 1], sets[#sets + 2] = 'seq', fields[1]
  end
  if worker ~= '' then
    fields[6] = string.sub(worker, 2)
    sets[#sets + 1], sets[#sets + 2] = 'reserved_by', fields[6]
  end
  redis.call('HSET', state, unpack(sets))
  redis.call('ZADD', RESERVED, untl, m)
  fields[3], fields[4], fields[5], fields[10] = attempts, 'reserved', untl, queue
  table.insert(fields, 1, body)
  table.insert(fields, 1, id)
  return fields
end

-- reserve the next due job of `queues` (nil: of every queue, by (available_at, seq) across them)
-- for `worker` (an optional text): its fields, or nil if none is due
local function reserve_one(now, lease, worker, queues)
  if not queues then
    while true do
      local best, best_at, best_queue, best_listed, best_list, best_zset = nil, nil, nil, false, nil, nil
      for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
        local m, at, listed, list, zset = due(queue, now)
        if m and (not best or before(at, m, best_at, best)) then
          best, best_at, best_queue, best_listed, best_list, best_zset = m, at, queue, listed, list, zset
        end
      end
      if not best then return nil end
      local found = claim(best_queue, best, best_listed, best_list, best_zset, now, lease, worker)
      if found then return found end
    end
  end
  for _, queue in ipairs(queues) do
    while true do
      local m, _, listed, list, zset = due(queue, now)
      if not m then break end
      local found = claim(queue, m, listed, list, zset, now, lease, worker)
      if found then return found end
    end
  end
  return nil
end
