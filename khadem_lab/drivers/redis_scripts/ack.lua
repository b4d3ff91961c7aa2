-- ARGV: (id, attempts) per job. Per job: 1 if acknowledged, 0 if the reservation was not the
-- current one.
local out = {}
for i = 1, #ARGV, 2 do out[#out + 1] = ack_job(ARGV[i], ARGV[i + 1]) end
return out
