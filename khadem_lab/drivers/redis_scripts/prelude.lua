-- Shared by every script. KEYS are the queue's fixed keys (KEY_NAMES, in that order); every other
-- key a script touches (a job's, a waiting list's) is built from the same prefix, so it shares their
-- hash tag: one Redis Cluster slot per queue. ARGV is the script's own. An optional text argument
-- is "" for None and "=" + the text otherwise (so an empty text is not None).
--
-- Data the driver did not write never stops a queue: a waiting entry that does not parse is taken
-- off its list or set and its description pushed to ``foreign`` (and returned, for the client to
-- log); a queue whose waiting keys hold another type is skipped (and reported once); a job whose
-- own keys hold another type is dead-lettered with the reason. Every script checks before it
-- changes anything (a Lua error does not undo the writes before it): the fixed keys at the top
-- (a KHADEMKEY error if one holds another type), a job's and a queue's keys before they are used.
local SEQ, QUEUES, RESERVED, DEAD, FOREIGN = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local P = string.sub(SEQ, 1, -#SEQ_NAME - 1)  -- the queue's prefix
local NOTES = {}
local MEMBER = '^' .. string.rep('%d', 20) .. ':([^|]+)$'  -- ids: digits, or a client's job_id
local ENTRY = '^([^|]+)|(' .. string.rep('%d', 20) .. ':%d+)$'
local function kind(key) return redis.call('TYPE', key)['ok'] end
-- the fixed keys hold what the driver writes there (or nothing): an error text otherwise
local function fixed()
  local want = {'string', 'set', 'zset', 'zset', 'list'}
  local seq = redis.pcall('GET', SEQ)  -- fails only if SEQ holds another type: then its TYPE is asked
  for i = 1, 5 do
    local t = (i > 1 or type(seq) == 'table') and kind(KEYS[i]) or 'none'
    if t ~= 'none' and t ~= want[i] then
      return 'KHADEMKEY ' .. KEYS[i] .. ' holds a ' .. t .. ', not a ' .. want[i]
    end
  end
  if seq and not string.match(seq, '^%d+$') then
    local shown = string.format('%q', string.sub(seq, 1, 40))
    return 'KHADEMKEY ' .. SEQ .. ' holds ' .. shown .. ', not a counter'
  end
  return nil
end
-- a queue name as it appears in keys: '%', ':', '{' and '}' percent-encoded
local function enc(name)
  if not string.find(name, '[%%:{}]') then return name end
  return (string.gsub(name, '[%%:{}]', function(c) return string.format('%%%02X', string.byte(c)) end))
end
-- something the driver did not write, taken aside: kept in FOREIGN and returned to the client
local function note(text)
  NOTES[#NOTES + 1] = text
  redis.call('RPUSH', FOREIGN, text)
end
local function note_entry(key, value)
  local shown = string.format('%q', string.sub(value, 1, 200))
  note(key .. ': ' .. shown .. ' is not an entry of the driver; taken off')
end
-- queue's waiting keys, their types, or nil if one holds another type (reported once, unless quiet)
local function usable(queue, quiet)
  local list, zset = P .. READY .. enc(queue), P .. WAITING .. enc(queue)
  local lt, zt = kind(list), kind(zset)
  local bad, t, want = nil, nil, nil
  if lt ~= 'list' and lt ~= 'none' then bad, t, want = list, lt, 'list'
  elseif zt ~= 'zset' and zt ~= 'none' then bad, t, want = zset, zt, 'sorted set' end
  if not bad then return list, zset, lt, zt end
  if not quiet and redis.call('SREM', QUEUES, queue) == 1 then
    note(string.format('queue %q skipped: %s holds a %s, not a %s', queue, bad, t, want))
  end
  return nil, bad .. ' holds a ' .. t .. ', not a ' .. want
end
local function member(seq, id) return string.format('%020d:', tonumber(seq)) .. id end
local function id_of(m) return string.match(m, MEMBER) end
-- a job's id, body and state fields, as the client reads them (false where its keys hold another type)
local function fetch(id, checked)
  local state, job = P .. STATE .. id, P .. JOB .. id
  local fields
  if checked or kind(state) == 'hash' then fields = redis.call('HMGET', state, unpack(FIELDS))
  else fields = {}; for i = 1, #FIELDS do fields[i] = false end end
  local body = false
  if checked or kind(job) == 'string' then body = redis.call('GET', job) end
  table.insert(fields, 1, body)
  table.insert(fields, 1, id)
  return fields
end
local function setopt(state, field, value)
  if value == '' then redis.call('HDEL', state, field)
  else redis.call('HSET', state, field, string.sub(value, 2)) end
end
-- (at, m) comes before (at2, m2): earlier available_at, then lower seq (members are zero-padded)
local function before(at, m, at2, m2)
  at, at2 = tonumber(at), tonumber(at2)
  return at < at2 or (at == at2 and m < m2)
end
-- a ready-list entry 'AVAILABLE_AT|SEQ:ID' as its time and member; nil if it is not one
local function entry(e)
  local at, m = string.match(e, ENTRY)
  if at and tonumber(at) then return at, m end
  return nil
end
local function take_seq() return string.format('%d', redis.call('INCR', SEQ)) end
local function enqueue(id, queue, at, seq)
  redis.call('ZADD', P .. WAITING .. enc(queue), at, member(seq, id))
  redis.call('SADD', QUEUES, queue)
end
-- the reservation given (by its attempts) is still the current one: its seq, else nil
local function held(id, attempts)
  local state = P .. STATE .. id
  if kind(state) ~= 'hash' then return nil end
  local current = redis.call('HMGET', state, 'status', 'attempts', 'seq')
  if current[1] ~= 'reserved' or current[2] ~= attempts then return nil end
  return current[3] or id
end
-- a job whose keys hold what the driver did not write: dead-lettered as it is, with the reason
local function bury_as_is(id, queue, reason, now)
  local state = P .. STATE .. id
  redis.call('DEL', state)
  local new = take_seq()
  redis.call('HSET', state, 'status', 'dead', 'seq', new, 'queue', queue, 'last_error', reason,
    'error_type', 'StorageError', 'failed_at', now)
  redis.call('ZADD', DEAD, new, id)
  note('job ' .. id .. ' dead-lettered: ' .. reason)
end
local bad = fixed()
if bad then return redis.error_reply(bad) end
