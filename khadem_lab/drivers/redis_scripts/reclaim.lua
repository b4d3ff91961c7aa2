-- ARGV: now, the lease-expired message. Returns the fields of each job whose lease ended (see
-- reclaim_expired in jobs.lua), then the notes on what was taken aside.
local out = reclaim_expired(ARGV[1], ARGV[2])
for _, text in ipairs(NOTES) do out[#out + 1] = text end
return out
