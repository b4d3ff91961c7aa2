-- ARGV: id, attempts. 1 if acknowledged, 0 if the reservation was not the current one.
local id = ARGV[1]
local seq = held(id, ARGV[2])
if not seq then return 0 end
redis.call('ZREM', RESERVED, member(seq, id))
redis.call('DEL', P .. JOB .. id, P .. STATE .. id)
return 1
