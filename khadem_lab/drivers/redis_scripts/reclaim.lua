-- ARGV: now, the lease-expired message. Returns the fields of each job whose lease ended, in
-- (reserved_until, seq) order, which is also the order they get their new seqs in, then the notes
-- on what was taken aside. A job whose header cannot be read counts as having no retries left; one
-- whose queue's keys hold another type is dead-lettered.
local now = ARGV[1]
local function max_retries(body)
  local ok, head = pcall(cjson.decode, string.match(body or '', '^[^\n]*'))
  if ok and type(head) == 'table' then return tonumber(head[5]) or 0 end
  return 0
end
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
        redis.call('HSET', state, 'status', 'dead', 'seq', new, 'last_error', ARGV[2],
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
for _, text in ipairs(NOTES) do out[#out + 1] = text end
return out
