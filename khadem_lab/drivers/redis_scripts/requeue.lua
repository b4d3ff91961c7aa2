-- uses dead_ids.lua
-- ARGV: now, '*' or '', ids. Dead letters back to pending, due now, attempts 0. One whose keys
-- hold what the driver did not write, or whose queue's keys do, stays where it is.
local now = ARGV[1]
local out = {}
for _, id in ipairs(dead_ids()) do
  local state = P .. STATE .. id
  local queue = kind(state) == 'hash' and redis.call('HGET', state, 'queue')
  if queue and kind(P .. JOB .. id) == 'string' and usable(queue, true) then
    local new = take_seq()
    redis.call('ZREM', DEAD, id)
    redis.call('HSET', state, 'status', 'pending', 'seq', new, 'attempts', '0', 'available_at', now)
    redis.call('HDEL', state, 'failed_at')
    enqueue(id, queue, now, new)
    out[#out + 1] = fetch(id, true)
  end
end
return out
