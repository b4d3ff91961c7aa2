-- The dead letters a requeue or purge acts on: ARGV[2] is '*' for all, else the ids from ARGV[3].
local function dead_ids()
  if ARGV[2] == '*' then return redis.call('ZRANGE', DEAD, 0, -1) end
  local ids = {}
  for i = 3, #ARGV do
    if redis.call('ZSCORE', DEAD, ARGV[i]) then ids[#ids + 1] = ARGV[i] end
  end
  return ids
end
