-- uses dead_ids.lua
-- ARGV: unused, '*' or '', ids. Deletes dead letters; returns their fields.
local out = {}
for _, id in ipairs(dead_ids()) do
  out[#out + 1] = fetch(id)
  redis.call('ZREM', DEAD, id)
  redis.call('DEL', P .. JOB .. id, P .. STATE .. id)
end
return out
