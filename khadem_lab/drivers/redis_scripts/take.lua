-- What a worker's slots do between jobs, in one call: ack the finished jobs, bring back the jobs
-- whose lease ended, then reserve jobs, in that order (as ack.lua, reclaim.lua and reserve.lua
-- called one after another would). ARGV: now, lease seconds, the number of acks, then (id,
-- attempts) per ack, the lease-expired message, the number of worker groups, then (worker
-- (optional), how many jobs) per group, then the queues in priority order (none: all queues). Reserving stops at the first that
-- finds no job. Returns {acks (1 or 0 each), reclaimed jobs' fields, reserved jobs' fields, notes}.
local now, lease = ARGV[1], ARGV[2]
local acks, i = {}, 4
for _ = 1, tonumber(ARGV[3]) do
  acks[#acks + 1] = ack_job(ARGV[i], ARGV[i + 1])
  i = i + 2
end
local reclaimed = reclaim_expired(now, ARGV[i])
local groups = tonumber(ARGV[i + 1])
local q = i + 2 + 2 * groups
local queues = nil
if #ARGV >= q then queues = {unpack(ARGV, q)} end
local taken = {}
i = i + 2
for _ = 1, groups do
  local worker, count = ARGV[i], tonumber(ARGV[i + 1])
  for _ = 1, count do
    local fields = reserve_one(now, lease, worker, queues)
    if not fields then return {acks, reclaimed, taken, NOTES} end
    taken[#taken + 1] = fields
  end
  i = i + 2
end
return {acks, reclaimed, taken, NOTES}
