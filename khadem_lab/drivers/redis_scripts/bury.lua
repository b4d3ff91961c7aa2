-- ARGV: id, attempts, last_error, error_type, failed_at (each optional).
-- Returns the new seq, or 0 if the reservation was not the current one.
local id = ARGV[1]
local state = P .. STATE .. id
local seq = held(id, ARGV[2])
if not seq then return 0 end
local new = take_seq()
redis.call('ZREM', RESERVED, member(seq, id))
redis.call('HSET', state, 'status', 'dead', 'seq', new)
redis.call('HDEL', state, 'reserved_until', 'reserved_by')
setopt(state, 'last_error', ARGV[3])
setopt(state, 'error_type', ARGV[4])
setopt(state, 'failed_at', ARGV[5])
redis.call('ZADD', DEAD, new, id)
return tonumber(new)
