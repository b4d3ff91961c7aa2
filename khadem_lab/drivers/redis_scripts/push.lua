-- ARGV: how many jobs, now, then one group per run of jobs with the same queue and available_at:
-- queue, available_at, k, then the k bodies; times as Python's repr, so no digit is lost in Lua
-- numbers. Returns the first id given (ids are consecutive, in ARGV order). Ids come from INCRBY
-- and never repeat (clear keeps the counter), so every job key is new.
local n, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local i = 3
while i <= #ARGV do  -- every queue's keys checked before anything is written
  local list, why = usable(ARGV[i], true)
  if not list then return redis.error_reply('KHADEMKEY ' .. why) end
  i = i + 3 + tonumber(ARGV[i + 2])
end
local first = redis.call('INCRBY', SEQ, n) - n + 1
local seq = first
local sets = {}
local function set_jobs()
  if #sets > 0 then redis.call('MSET', unpack(sets)); sets = {} end
end
i = 3
while i <= #ARGV do
  local queue, at, k = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local list, zset = P .. READY .. enc(queue), P .. WAITING .. enc(queue)
  i = i + 3
  local tail = redis.call('LINDEX', list, -1)
  local tail_at = tail and entry(tail)
  local t = tonumber(at)
  -- due, and not before the list's last entry: appended, in order; else the sorted set
  local listed = t <= now and (not tail or (tail_at and tonumber(tail_at) <= t))
  local adds = {}
  local job = P .. JOB
  for _ = 1, k do
    sets[#sets + 1] = string.format('%s%d', job, seq)
    sets[#sets + 1] = ARGV[i]
    if listed then adds[#adds + 1] = string.format('%s|%020d:%d', at, seq, seq)
    else adds[#adds + 1] = at; adds[#adds + 1] = string.format('%020d:%d', seq, seq) end
    if #sets == 1000 then set_jobs() end
    if #adds == 1000 then
      if listed then redis.call('RPUSH', list, unpack(adds)) else redis.call('ZADD', zset, unpack(adds)) end
      adds = {}
    end
    seq, i = seq + 1, i + 1
  end
  if #adds > 0 then
    if listed then redis.call('RPUSH', list, unpack(adds)) else redis.call('ZADD', zset, unpack(adds)) end
  end
  redis.call('SADD', QUEUES, queue)
end
set_jobs()
return first
