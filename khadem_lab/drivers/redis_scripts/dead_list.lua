-- ARGV: last index (-1: all). The dead letters' fields, oldest first.
local out = {}
for _, id in ipairs(redis.call('ZRANGE', DEAD, 0, tonumber(ARGV[1]))) do
  out[#out + 1] = fetch(id)
end
return out
