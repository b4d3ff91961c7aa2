-- Dispatch with client ids (job_id=). ARGV: now, remember until, then per job: queue,
-- available_at, id, fingerprint, body. ``ids`` (a hash id -> fingerprint) and ``idtimes`` (a
-- sorted set of the ids by remember-until) remember the ids; an id is taken while ``job:ID`` or
-- ``state:ID`` exists or it is remembered. Jobs go to the sorted set (``queue:NAME``) with a seq
-- of their own in ``state:ID``. Returns per job false (stored) or the remembered fingerprint
-- ('' if the job is stored but its id no longer remembered).
local now, keep = ARGV[1], ARGV[2]
local IDS, TIMES = P .. 'ids', P .. 'idtimes'
for key, want in pairs({[IDS] = 'hash', [TIMES] = 'zset'}) do
  local t = kind(key)
  if t ~= 'none' and t ~= want then
    return redis.error_reply('KHADEMKEY ' .. key .. ' holds a ' .. t .. ', not a ' .. want)
  end
end
for i = 3, #ARGV, 5 do
  local list, why = usable(ARGV[i], true)
  if not list then return redis.error_reply('KHADEMKEY ' .. why) end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', TIMES, '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', TIMES, id)
  redis.call('HDEL', IDS, id)
end
local out = {}
for i = 3, #ARGV, 5 do
  local queue, at, id, mark, body = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local job, state = P .. 'job:' .. id, P .. 'state:' .. id
  local known = redis.call('HGET', IDS, id)
  if not known and redis.call('EXISTS', job, state) > 0 then known = '' end
  if known then
    out[#out + 1] = known
  else
    local seq = take_seq()
    redis.call('SET', job, body)
    redis.call('HSET', state, 'seq', seq)
    enqueue(id, queue, at, seq)
    redis.call('HSET', IDS, id, mark)
    redis.call('ZADD', TIMES, keep, id)
    out[#out + 1] = false
  end
end
return out
