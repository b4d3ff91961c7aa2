-- ARGV: now. The waiting jobs that are due and all the waiting jobs, over every queue, the
-- reserved jobs and the entries taken aside: {ready, waiting, reserved, foreign}, one consistent
-- view. Changes nothing (a queue whose keys hold another type is left out).
local now = tonumber(ARGV[1])
local ready, waiting = 0, 0
for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
  local list, zset, lt, zt = usable(queue, true)
  if list and zt == 'zset' then
    ready = ready + redis.call('ZCOUNT', zset, '-inf', ARGV[1])
    waiting = waiting + redis.call('ZCARD', zset)
  end
  if list and lt == 'list' then
    local n = redis.call('LLEN', list)
    waiting = waiting + n
    local tail_at = entry(redis.call('LINDEX', list, -1))
    if tail_at and tonumber(tail_at) <= now then ready = ready + n
    else  -- listed by a process whose clock is ahead of this one's: count the due ones
      for _, e in ipairs(redis.call('LRANGE', list, 0, -1)) do
        local at = entry(e)
        if at and tonumber(at) <= now then ready = ready + 1 end
      end
    end
  end
end
return {ready, waiting, redis.call('ZCARD', RESERVED), redis.call('LLEN', FOREIGN)}
