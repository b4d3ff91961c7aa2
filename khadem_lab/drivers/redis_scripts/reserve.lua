-- ARGV: now, lease seconds, worker (optional), then the queues in priority order (none: all
-- queues, by (available_at, seq) across them). Returns nil, or the reserved job's fields (false
-- when none was reserved) followed by the notes on what was taken aside.
local queues = nil
if #ARGV > 3 then queues = {unpack(ARGV, 4)} end
local fields = reserve_one(ARGV[1], ARGV[2], ARGV[3], queues)
if #NOTES == 0 then return fields end
if not fields then fields = {}; for i = 1, #FIELDS + 2 do fields[i] = false end end
for _, text in ipairs(NOTES) do fields[#fields + 1] = text end
return fields
