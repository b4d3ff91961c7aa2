-- ARGV: id, attempts, available_at, last_error (optional), error_type (optional).
-- Returns the new seq, or 0 if the reservation was not the current one.
local id = ARGV[1]
local state = P .. STATE .. id
local seq = held(id, ARGV[2])
if not seq then return 0 end
local queue = redis.call('HGET', state, 'queue') or ''
local ok, why = usable(queue, true)
if not ok then return redis.error_reply('KHADEMKEY ' .. why) end
local new = take_seq()
redis.call('ZREM', RESERVED, member(seq, id))
redis.call('HSET', state, 'status', 'pending', 'seq', new, 'available_at', ARGV[3])
redis.call('HDEL', state, 'reserved_until', 'reserved_by')
setopt(state, 'last_error', ARGV[4])
setopt(state, 'error_type', ARGV[5])
enqueue(id, queue, ARGV[3], new)
return tonumber(new)
