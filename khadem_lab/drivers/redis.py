"""RedisStorageDriver (``driver: redis``): jobs in Redis, shared by workers on any number of machines.

Every operation that changes the queue is one Lua script (the Laravel / BullMQ pattern), so it is
atomic: whatever runs a queue's scripts at the same time, on whatever machine, no job is taken
twice and none is half-written. All keys of a queue live under one prefix, ``khadem:{QUEUE_NAME}:``,
the name encoded by :func:`key_part` (``%``, ``:``, ``{`` and ``}`` percent-encoded, as are job queue
names in keys), so no two names share a key and the braces are a Redis Cluster hash tag (one slot
per queue). Entries and keys the driver did not write are handled as described before PRELUDE:

- ``seq``: the counter ids and sequence numbers come from (``INCR``), so ids are unique across
  processes and the same in every rerun of a simulation;
- ``job:ID``: the job as dispatched, a string written once by the client and never changed: a JSON
  header line ``[timeout, queue, type, display_name, max_retries, created_at, available_at]``, a
  newline, then the payload's JSON. The scripts store it as it came and never re-encode it; the
  one field they read, the timeout (for the lease), comes first so a pattern finds it;
- ``state:ID``: a hash of what changed since: ``status``, ``attempts``, ``seq``, ``available_at``,
  ``queue``, ``reserved_until``, ``reserved_by``, ``last_error``, ``error_type``, ``failed_at``.
  It is made when the job is first reserved; a field that is absent has a new job's value
  (pending, 0 attempts, seq = the id, the header's ``available_at`` and queue);
- ``ready:NAME`` and ``queue:NAME``: the waiting jobs of one queue. Members are ``SEQ:ID`` with
  the sequence number zero-padded to 20 digits. ``ready:NAME`` is a list of jobs that were due
  when dispatched, as ``AVAILABLE_AT|SEQ:ID``, in ``(available_at, seq)`` order: a dispatch appends
  a due job there when that keeps the order, and puts it in the sorted set otherwise.
  ``queue:NAME`` is a sorted set of the others (delayed jobs, retries, jobs back from an ended
  lease or from the dead-letter queue), scored by ``available_at``, ties ordered by seq. A reserve
  takes whichever head comes first, so the order is exactly ``(available_at, seq)``, within a
  queue and, for a worker that takes any queue, across them;
- ``queues``: the set of queue names with waiting jobs;
- ``reserved``: a sorted set of the reserved jobs (``SEQ:ID``) scored by ``reserved_until``;
- ``dead``: a sorted set of the dead letters (``ID``) scored by the seq they died with.

So a batch dispatch of due jobs costs the server one ``MSET`` per 500 jobs and one ``RPUSH`` per
1,000 (strings and a list append are the cheapest things Redis stores), inside one script call.

Times come from the injected clock and are passed to the scripts as arguments (never Redis TIME,
EXPIRE or a blocking pop's timeout). The client is redis-py's synchronous one: a round trip holds
the event loop, so virtual time cannot move while a call is in flight, which keeps a Redis-backed
queue deterministic under :class:`~khadem_lab.simulation.Simulation`. Times that a script computes
(``reserved_until``) are stored with 17 significant digits, so they read back as the very double
Python would have computed.

redis-py is imported when a driver is built, so the rest of the package works without it.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..config import DriverConfig
from ..errors import ConfigError, DispatchOutcomeUnknown, StorageError
from ..records import LEASE_EXPIRED_ERROR, JobRecord, JobStatus, QueueCounts
from .base import BaseQueueDriver

if TYPE_CHECKING:
    from redis import Redis
    from redis.commands.core import Script

log = logging.getLogger(__name__)

#: The ``state:ID`` fields a script returns for a job, after its id and body, in this order.
FIELDS = (
    "seq",
    "available_at",
    "attempts",
    "status",
    "reserved_until",
    "reserved_by",
    "last_error",
    "error_type",
    "failed_at",
    "queue",
)
URL_SCHEMES = ("redis://", "rediss://", "unix://")
COMPACT = (",", ":")
HEADS_CACHED = 256  # job headers (all but the two times) kept per driver, for batch dispatch
#: The queue's fixed keys, after its prefix, in the order every script gets them as KEYS.
KEY_NAMES = ("seq", "queues", "reserved", "dead", "foreign")
_ESCAPED = re.compile(r"[%:{}]")
_URL_PASSWORD = re.compile(r"(://[^/@]*?:)[^/@]*@")


def key_part(name: str) -> str:
    """A queue name as it appears in keys: ``%``, ``:``, ``{`` and ``}`` percent-encoded, so no
    two names give the same key and the name never ends or opens a hash tag."""
    return _ESCAPED.sub(lambda m: f"%{ord(m[0]):02X}", name)


def redact_url(url: object) -> object:
    """A Redis URL with its password replaced by ``***`` (anything else as it is)."""
    return _URL_PASSWORD.sub(r"\1***@", url) if isinstance(url, str) else url


# Shared by every script. KEYS are the queue's fixed keys (KEY_NAMES, in that order); every other
# key a script touches (a job's, a waiting list's) is built from the same prefix, so it shares their
# hash tag: one Redis Cluster slot per queue. ARGV is the script's own. An optional text argument
# is "" for None and "=" + the text otherwise (so an empty text is not None).
#
# Data the driver did not write never stops a queue: a waiting entry that does not parse is taken
# off its list or set and its description pushed to ``foreign`` (and returned, for the client to
# log); a queue whose waiting keys hold another type is skipped (and reported once); a job whose
# own keys hold another type is dead-lettered with the reason. Every script checks before it
# changes anything (a Lua error does not undo the writes before it): the fixed keys at the top
# (a KHADEMKEY error if one holds another type), a job's and a queue's keys before they are used.
PRELUDE = (
    "local FIELDS = {"
    + ", ".join(f"'{name}'" for name in FIELDS)
    + "}\n"
    + """
local SEQ, QUEUES, RESERVED, DEAD, FOREIGN = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local P = string.sub(SEQ, 1, -4)
local NOTES = {}
local MEMBER = '^' .. string.rep('%d', 20) .. ':([^|]+)$'  -- ids: digits, or a client's job_id
local ENTRY = '^([^|]+)|(' .. string.rep('%d', 20) .. ':%d+)$'
local function kind(key) return redis.call('TYPE', key)['ok'] end
-- the fixed keys hold what the driver writes there (or nothing): an error text otherwise
local function fixed()
  local want = {'string', 'set', 'zset', 'zset', 'list'}
  for i = 1, 5 do
    local t = kind(KEYS[i])
    if t ~= 'none' and t ~= want[i] then
      return 'KHADEMKEY ' .. KEYS[i] .. ' holds a ' .. t .. ', not a ' .. want[i]
    end
  end
  local seq = redis.call('GET', SEQ)
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
  local list, zset = P .. 'ready:' .. enc(queue), P .. 'queue:' .. enc(queue)
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
  local state, job = P .. 'state:' .. id, P .. 'job:' .. id
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
  redis.call('ZADD', P .. 'queue:' .. enc(queue), at, member(seq, id))
  redis.call('SADD', QUEUES, queue)
end
-- the reservation given (by its attempts) is still the current one: its seq, else nil
local function held(id, attempts)
  local state = P .. 'state:' .. id
  if kind(state) ~= 'hash' then return nil end
  local current = redis.call('HMGET', state, 'status', 'attempts', 'seq')
  if current[1] ~= 'reserved' or current[2] ~= attempts then return nil end
  return current[3] or id
end
-- a job whose keys hold what the driver did not write: dead-lettered as it is, with the reason
local function bury_as_is(id, queue, reason, now)
  local state = P .. 'state:' .. id
  redis.call('DEL', state)
  local new = take_seq()
  redis.call('HSET', state, 'status', 'dead', 'seq', new, 'queue', queue, 'last_error', reason,
    'error_type', 'StorageError', 'failed_at', now)
  redis.call('ZADD', DEAD, new, id)
  note('job ' .. id .. ' dead-lettered: ' .. reason)
end
local bad = fixed()
if bad then return redis.error_reply(bad) end
"""
)

# ARGV: how many jobs, now, then one group per run of jobs with the same queue and available_at:
# queue, available_at, k, then the k bodies; times as Python's repr, so no digit is lost in Lua
# numbers. Returns the first id given (ids are consecutive, in ARGV order). Ids come from INCRBY
# and never repeat (clear keeps the counter), so every job key is new.
PUSH = """
local n, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local i = 3
while i <= #ARGV do  -- every queue's keys checked before anything is written
  local list, why = usable(ARGV[i], true)
  if not list then return redis.error_reply('KHADEMKEY ' .. why) end
  i = i + 3 + tonumber(ARGV[i + 2])
end
local first = redis.call('INCRBY', SEQ, n) - n + 1
local seq = first
local sets = {}
local function set_jobs()
  if #sets > 0 then redis.call('MSET', unpack(sets)); sets = {} end
end
i = 3
while i <= #ARGV do
  local queue, at, k = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local list, zset = P .. 'ready:' .. enc(queue), P .. 'queue:' .. enc(queue)
  i = i + 3
  local tail = redis.call('LINDEX', list, -1)
  local tail_at = tail and entry(tail)
  local t = tonumber(at)
  -- due, and not before the list's last entry: appended, in order; else the sorted set
  local listed = t <= now and (not tail or (tail_at and tonumber(tail_at) <= t))
  local adds = {}
  local job = P .. 'job:'
  for _ = 1, k do
    sets[#sets + 1] = string.format('%s%d', job, seq)
    sets[#sets + 1] = ARGV[i]
    if listed then adds[#adds + 1] = string.format('%s|%020d:%d', at, seq, seq)
    else adds[#adds + 1] = at; adds[#adds + 1] = string.format('%020d:%d', seq, seq) end
    if #sets == 1000 then set_jobs() end
    if #adds == 1000 then
      if listed then redis.call('RPUSH', list, unpack(adds)) else redis.call('ZADD', zset, unpack(adds)) end
      adds = {}
    end
    seq, i = seq + 1, i + 1
  end
  if #adds > 0 then
    if listed then redis.call('RPUSH', list, unpack(adds)) else redis.call('ZADD', zset, unpack(adds)) end
  end
  redis.call('SADD', QUEUES, queue)
end
set_jobs()
return first
"""

# Dispatch with client ids (job_id=). ARGV: now, remember until, then per job: queue,
# available_at, id, fingerprint, body. ``ids`` (a hash id -> fingerprint) and ``idtimes`` (a
# sorted set of the ids by remember-until) remember the ids; an id is taken while ``job:ID`` or
# ``state:ID`` exists or it is remembered. Jobs go to the sorted set (``queue:NAME``) with a seq
# of their own in ``state:ID``. Returns per job false (stored) or the remembered fingerprint
# ('' if the job is stored but its id no longer remembered).
PUSH_IDS = """
local now, keep = ARGV[1], ARGV[2]
local IDS, TIMES = P .. 'ids', P .. 'idtimes'
for key, want in pairs({[IDS] = 'hash', [TIMES] = 'zset'}) do
  local t = kind(key)
  if t ~= 'none' and t ~= want then
    return redis.error_reply('KHADEMKEY ' .. key .. ' holds a ' .. t .. ', not a ' .. want)
  end
end
for i = 3, #ARGV, 5 do
  local list, why = usable(ARGV[i], true)
  if not list then return redis.error_reply('KHADEMKEY ' .. why) end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', TIMES, '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', TIMES, id)
  redis.call('HDEL', IDS, id)
end
local out = {}
for i = 3, #ARGV, 5 do
  local queue, at, id, mark, body = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local job, state = P .. 'job:' .. id, P .. 'state:' .. id
  local known = redis.call('HGET', IDS, id)
  if not known and redis.call('EXISTS', job, state) > 0 then known = '' end
  if known then
    out[#out + 1] = known
  else
    local seq = take_seq()
    redis.call('SET', job, body)
    redis.call('HSET', state, 'seq', seq)
    enqueue(id, queue, at, seq)
    redis.call('HSET', IDS, id, mark)
    redis.call('ZADD', TIMES, keep, id)
    out[#out + 1] = false
  end
end
return out
"""

# ARGV: now, lease seconds, worker (optional), then the queues in priority order (none: all
# queues, by (available_at, seq) across them). Returns nil, or the reserved job's fields (false
# when none was reserved) followed by the notes on what was taken aside.
RESERVE = """
local now = ARGV[1]
-- the first due job of a queue: its member, available_at, whether it heads the ready list, keys
local function due(queue)
  local list, zset, lt, zt = usable(queue)
  if not list then return nil end
  local m, at, listed = nil, nil, false
  while lt == 'list' do
    local head = redis.call('LINDEX', list, 0)
    if not head then break end
    local a, hm = entry(head)
    if a then
      if tonumber(a) <= tonumber(now) then m, at, listed = hm, a, true end
      break
    end
    redis.call('LPOP', list)
    note_entry(list, head)
  end
  while zt == 'zset' do
    local z = redis.call('ZRANGEBYSCORE', zset, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
    if not z[1] then break end
    if id_of(z[1]) then
      if not m or before(z[2], z[1], at, m) then m, at, listed = z[1], z[2], false end
      break
    end
    redis.call('ZREM', zset, z[1])
    note_entry(zset, z[1])
  end
  return m, at, listed, list, zset
end
-- take member m off its queue; reserve its job, or nil if the job is gone (keys removed by hand)
-- or its keys hold what the driver did not write (then it is dead-lettered as it is)
local function claim(queue, m, listed, list, zset)
  local id = id_of(m)
  local job, state = P .. 'job:' .. id, P .. 'state:' .. id
  local jt, st = kind(job), kind(state)  -- before anything changes
  if listed then redis.call('LPOP', list) else redis.call('ZREM', zset, m) end
  if redis.call('EXISTS', list, zset) == 0 then redis.call('SREM', QUEUES, queue) end
  if jt == 'none' then return nil end
  local what = nil
  if st == 'hash' then
    local status, attempts = unpack(redis.call('HMGET', state, 'status', 'attempts'))
    if status == 'reserved' or status == 'dead' then return nil end  -- an old entry of the job
    if status and status ~= 'pending' then what = state .. ' has status ' .. string.format('%q', status)
    elseif attempts and not string.match(attempts, '^%d+$') then
      what = state .. ' has attempts ' .. string.format('%q', string.sub(attempts, 1, 40))
    end
  end
  if what or jt ~= 'string' or (st ~= 'hash' and st ~= 'none') then
    if not what then what = job .. ' holds a ' .. jt .. ', not a string' end
    if jt == 'string' and st ~= 'hash' then
      what = state .. ' holds a ' .. st .. ', not a hash'
      if st == 'string' then
        what = what .. ' (' .. string.format('%q', string.sub(redis.call('GET', state), 1, 80)) .. ')'
      end
    end
    bury_as_is(id, queue, 'StorageError: ' .. what .. ', so the job was dead-lettered as it was; '
      .. 'the state was reset: requeue it to run it', now)
    return nil
  end
  local body = redis.call('GET', job)
  local timeout = tonumber(string.match(body, '^%[([^,]*),') or '') or 0
  local untl = string.format('%.17g', tonumber(now) + tonumber(ARGV[2]) + timeout)
  redis.call('HINCRBY', state, 'attempts', 1)
  -- the seq is the id for a job dispatched without job_id; any other keeps its member's seq
  if not string.match(id, '^%d+$') and not redis.call('HGET', state, 'seq') then
    redis.call('HSET', state, 'seq', string.format('%d', tonumber(string.sub(m, 1, 20))))
  end
  if ARGV[3] == '' then
    redis.call('HSET', state, 'status', 'reserved', 'reserved_until', untl, 'queue', queue)
  else
    redis.call('HSET', state, 'status', 'reserved', 'reserved_until', untl, 'queue', queue,
      'reserved_by', string.sub(ARGV[3], 2))
  end
  redis.call('ZADD', RESERVED, untl, m)
  return fetch(id, true)
end
local function reply(fields)
  if #NOTES == 0 then return fields end
  if not fields then fields = {}; for i = 1, #FIELDS + 2 do fields[i] = false end end
  for _, text in ipairs(NOTES) do fields[#fields + 1] = text end
  return fields
end
if #ARGV == 3 then
  while true do
    local best, best_at, best_queue, best_listed, best_list, best_zset = nil, nil, nil, false, nil, nil
    for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
      local m, at, listed, list, zset = due(queue)
      if m and (not best or before(at, m, best_at, best)) then
        best, best_at, best_queue, best_listed, best_list, best_zset = m, at, queue, listed, list, zset
      end
    end
    if not best then return reply(nil) end
    local found = claim(best_queue, best, best_listed, best_list, best_zset)
    if found then return reply(found) end
  end
end
for i = 4, #ARGV do
  while true do
    local m, _, listed, list, zset = due(ARGV[i])
    if not m then break end
    local found = claim(ARGV[i], m, listed, list, zset)
    if found then return reply(found) end
  end
end
return reply(nil)
"""

# ARGV: id, attempts. 1 if acknowledged, 0 if the reservation was not the current one.
ACK = """
local id = ARGV[1]
local seq = held(id, ARGV[2])
if not seq then return 0 end
redis.call('ZREM', RESERVED, member(seq, id))
redis.call('DEL', P .. 'job:' .. id, P .. 'state:' .. id)
return 1
"""

# ARGV: id, attempts, available_at, last_error (optional), error_type (optional).
# Returns the new seq, or 0 if the reservation was not the current one.
RELEASE = """
local id = ARGV[1]
local state = P .. 'state:' .. id
local seq = held(id, ARGV[2])
if not seq then return 0 end
local queue = redis.call('HGET', state, 'queue') or ''
local ok, why = usable(queue, true)
if not ok then return redis.error_reply('KHADEMKEY ' .. why) end
local new = take_seq()
redis.call('ZREM', RESERVED, member(seq, id))
redis.call('HSET', state, 'status', 'pending', 'seq', new, 'available_at', ARGV[3])
redis.call('HDEL', state, 'reserved_until', 'reserved_by')
setopt(state, 'last_error', ARGV[4])
setopt(state, 'error_type', ARGV[5])
enqueue(id, queue, ARGV[3], new)
return tonumber(new)
"""

# ARGV: id, attempts, last_error, error_type, failed_at (each optional).
# Returns the new seq, or 0 if the reservation was not the current one.
BURY = """
local id = ARGV[1]
local state = P .. 'state:' .. id
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
"""

# ARGV: now, the lease-expired message. Returns the fields of each job whose lease ended, in
# (reserved_until, seq) order, which is also the order they get their new seqs in, then the notes
# on what was taken aside. A job whose header cannot be read counts as having no retries left; one
# whose queue's keys hold another type is dead-lettered.
RECLAIM = """
local now = ARGV[1]
local function max_retries(body)
  local ok, head = pcall(cjson.decode, string.match(body or '', '^[^\\n]*'))
  if ok and type(head) == 'table' then return tonumber(head[5]) or 0 end
  return 0
end
local out = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', RESERVED, '-inf', now)) do
  redis.call('ZREM', RESERVED, m)
  local id = id_of(m)
  local state = P .. 'state:' .. (id or '')
  if not id then
    note_entry(RESERVED, m)
  elseif kind(state) == 'hash' then
    local current = redis.call('HMGET', state, 'status', 'attempts', 'queue')
    if current[1] == 'reserved' then
      local job = P .. 'job:' .. id
      local body = kind(job) == 'string' and redis.call('GET', job) or nil
      local queue = current[3] or ''
      local ok, why = usable(queue, true)
      local new = take_seq()
      redis.call('HDEL', state, 'reserved_until', 'reserved_by')
      if not ok then
        redis.call('HSET', state, 'status', 'dead', 'seq', new, 'last_error', 'StorageError: ' .. why
          .. ', so the job could not go back to its queue', 'error_type', 'StorageError', 'failed_at', now)
        redis.call('ZADD', DEAD, new, id)
      elseif tonumber(current[2]) >= max_retries(body) + 1 then
        redis.call('HSET', state, 'status', 'dead', 'seq', new, 'last_error', ARGV[2],
          'error_type', 'LeaseExpired', 'failed_at', now)
        redis.call('ZADD', DEAD, new, id)
      else
        redis.call('HSET', state, 'status', 'pending', 'seq', new, 'available_at', now)
        enqueue(id, queue, now, new)
      end
      out[#out + 1] = fetch(id)
    end
  end
end
for _, text in ipairs(NOTES) do out[#out + 1] = text end
return out
"""

# ARGV: now. The waiting jobs that are due and all the waiting jobs, over every queue, the
# reserved jobs and the entries taken aside: {ready, waiting, reserved, foreign}, one consistent
# view. Changes nothing (a queue whose keys hold another type is left out).
COUNTS = """
local now = tonumber(ARGV[1])
local ready, waiting = 0, 0
for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
  local list, zset, lt, zt = usable(queue, true)
  if list and zt == 'zset' then
    ready = ready + redis.call('ZCOUNT', zset, '-inf', ARGV[1])
    waiting = waiting + redis.call('ZCARD', zset)
  end
  if list and lt == 'list' then
    local n = redis.call('LLEN', list)
    waiting = waiting + n
    local tail_at = entry(redis.call('LINDEX', list, -1))
    if tail_at and tonumber(tail_at) <= now then ready = ready + n
    else  -- listed by a process whose clock is ahead of this one's: count the due ones
      for _, e in ipairs(redis.call('LRANGE', list, 0, -1)) do
        local at = entry(e)
        if at and tonumber(at) <= now then ready = ready + 1 end
      end
    end
  end
end
return {ready, waiting, redis.call('ZCARD', RESERVED), redis.call('LLEN', FOREIGN)}
"""

# ARGV: the queues (none: all). The earliest available_at among their waiting jobs (as stored, a
# string with every digit), or nil. Changes nothing.
NEXT_AT = """
local queues = {}
for i = 1, #ARGV do queues[#queues + 1] = ARGV[i] end
if #ARGV == 0 then queues = redis.call('SMEMBERS', QUEUES) end
local best, best_at = nil, nil
local function consider(at)
  if at and (not best or tonumber(at) < best) then best, best_at = tonumber(at), at end
end
for _, queue in ipairs(queues) do
  local list, zset, lt, zt = usable(queue, true)
  if list and zt == 'zset' then consider(redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')[2]) end
  if list and lt == 'list' then
    local head = redis.call('LINDEX', list, 0)
    if head then consider((entry(head))) end
  end
end
return best_at
"""

# ARGV: none. Removes every waiting and reserved job (not the dead letters); returns how many.
# Keys that hold what the driver did not write are left as they are.
CLEAR = """
local n = 0
local function drop(m)
  local id = m and id_of(m)
  if not id then return end
  n = n + redis.call('DEL', P .. 'job:' .. id)
  redis.call('DEL', P .. 'state:' .. id)
end
local keys = {RESERVED}
for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
  local list, zset, lt, zt = usable(queue, true)
  if list then
    if zt == 'zset' then keys[#keys + 1] = zset end
    if lt == 'list' then
      for _, e in ipairs(redis.call('LRANGE', list, 0, -1)) do
        local _, m = entry(e)
        drop(m)
      end
      redis.call('DEL', list)
    end
  end
end
for _, key in ipairs(keys) do
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do drop(m) end
  redis.call('DEL', key)
end
redis.call('DEL', QUEUES)
return n
"""

# ARGV: last index (-1: all). The dead letters' fields, oldest first.
# Inspection (khadem-lab jobs). ARGV: now, state ('ready', 'delayed' or 'reserved'). Read only;
# the client orders what it gets.
LIST = """
local now, state = tonumber(ARGV[1]), ARGV[2]
local out = {}
local function add(m)
  local id = id_of(m)
  if id then out[#out + 1] = fetch(id) end
end
if state == 'reserved' then
  for _, m in ipairs(redis.call('ZRANGE', RESERVED, 0, -1)) do add(m) end
  return out
end
local due = state == 'ready'
for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
  local list, zset, lt, zt = usable(queue, true)
  if list and zt == 'zset' then
    local members
    if due then members = redis.call('ZRANGEBYSCORE', zset, '-inf', ARGV[1])
    else members = redis.call('ZRANGEBYSCORE', zset, '(' .. ARGV[1], '+inf') end
    for _, m in ipairs(members) do add(m) end
  end
  if list and lt == 'list' then
    for _, e in ipairs(redis.call('LRANGE', list, 0, -1)) do
      local at, m = entry(e)
      if at and ((tonumber(at) <= now) == due) then add(m) end
    end
  end
end
return out
"""

# ARGV: the id of a waiting (pending) job: taken off its queue and deleted; its fields returned,
# or false if it is not waiting (unknown, reserved, dead, or its keys hold what the driver did
# not write).
CANCEL = """
local id = ARGV[1]
local state, job = P .. 'state:' .. id, P .. 'job:' .. id
if kind(job) ~= 'string' then return false end
local st = {false, false, false}
if kind(state) == 'hash' then st = redis.call('HMGET', state, 'status', 'seq', 'queue')
elseif kind(state) ~= 'none' then return false end
if st[1] and st[1] ~= 'pending' then return false end
local queue = st[3]
if not queue then
  local ok, head = pcall(cjson.decode, string.match(redis.call('GET', job), '^[^\\n]*'))
  if not ok or type(head) ~= 'table' or type(head[2]) ~= 'string' then return false end
  queue = head[2]
end
local list, zset, lt, zt = usable(queue, true)
if not list then return false end
local m = member(st[2] or id, id)
local found = zt == 'zset' and redis.call('ZREM', zset, m) == 1
if not found and lt == 'list' then
  for _, e in ipairs(redis.call('LRANGE', list, 0, -1)) do
    local _, em = entry(e)
    if em == m then
      redis.call('LREM', list, 1, e)
      found = true
      break
    end
  end
end
if not found then return false end
local out = fetch(id, true)
redis.call('DEL', job, state)
return out
"""

DEAD_LIST = """
local out = {}
for _, id in ipairs(redis.call('ZRANGE', DEAD, 0, tonumber(ARGV[1]))) do
  out[#out + 1] = fetch(id)
end
return out
"""

# The dead letters a requeue or purge acts on: ARGV[2] is '*' for all, else the ids from ARGV[3].
DEAD_IDS = """
local function dead_ids()
  if ARGV[2] == '*' then return redis.call('ZRANGE', DEAD, 0, -1) end
  local ids = {}
  for i = 3, #ARGV do
    if redis.call('ZSCORE', DEAD, ARGV[i]) then ids[#ids + 1] = ARGV[i] end
  end
  return ids
end
"""

# ARGV: now, '*' or '', ids. Dead letters back to pending, due now, attempts 0. One whose keys
# hold what the driver did not write, or whose queue's keys do, stays where it is.
REQUEUE = (
    DEAD_IDS
    + """
local now = ARGV[1]
local out = {}
for _, id in ipairs(dead_ids()) do
  local state = P .. 'state:' .. id
  local queue = kind(state) == 'hash' and redis.call('HGET', state, 'queue')
  if queue and kind(P .. 'job:' .. id) == 'string' and usable(queue, true) then
    local new = take_seq()
    redis.call('ZREM', DEAD, id)
    redis.call('HSET', state, 'status', 'pending', 'seq', new, 'attempts', '0', 'available_at', now)
    redis.call('HDEL', state, 'failed_at')
    enqueue(id, queue, now, new)
    out[#out + 1] = fetch(id, true)
  end
end
return out
"""
)

# ARGV: unused, '*' or '', ids. Deletes dead letters; returns their fields.
PURGE = (
    DEAD_IDS
    + """
local out = {}
for _, id in ipairs(dead_ids()) do
  out[#out + 1] = fetch(id)
  redis.call('ZREM', DEAD, id)
  redis.call('DEL', P .. 'job:' .. id, P .. 'state:' .. id)
end
return out
"""
)


class RedisStorageDriver(BaseQueueDriver):
    """Persistent queue in Redis; safe with any number of worker processes on any machines."""

    driver_type = "redis"
    shared_between_processes = True
    serializes_jobs = True

    def __init__(
        self,
        config: DriverConfig | None = None,
        *,
        host: str = "localhost",
        port: int = 6379,
        password: str | None = None,
        db: int = 0,
        url: str | None = None,
        queue_name: str = "default",
        socket_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        where = f"queue.drivers.{self.name}"
        _check(f"{where}.host", host, isinstance(host, str) and bool(host), "a host name")
        _check(f"{where}.port", port, _is_int(port) and 0 < port < 65536, "an integer from 1 to 65535")
        _check(f"{where}.db", db, _is_int(db) and db >= 0, "an integer >= 0")
        _check(
            f"{where}.password",
            "***" if isinstance(password, str) else f"<{type(password).__name__}, not shown>",
            password is None or isinstance(password, str),
            "a string",
        )
        _check(
            f"{where}.url",
            redact_url(url),
            url is None or (isinstance(url, str) and url.startswith(URL_SCHEMES)),
            "a redis://, rediss:// (TLS) or unix:// URL",
        )
        _check(f"{where}.queue_name", queue_name, isinstance(queue_name, str) and bool(queue_name), "a name")
        _check(
            f"{where}.socket_timeout",
            socket_timeout,
            (_is_int(socket_timeout) or isinstance(socket_timeout, float)) and socket_timeout > 0,
            "a positive number of seconds",
        )
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:
            raise ConfigError(
                f"{where}.driver", "redis", "redis-py to be installed: pip install 'khadem-lab[redis]'"
            ) from exc
        self.queue_name = queue_name
        #: Every key of this queue starts with it; nothing else is ever touched. The name is
        #: encoded (:func:`key_part`) in a Redis Cluster hash tag: one slot per queue.
        self.prefix = f"khadem:{{{key_part(queue_name)}}}:"
        self._keys = [self.prefix + name for name in KEY_NAMES]
        # No automatic retry: a script whose reply was lost may have run, and running a dispatch
        # twice would store the job twice. A failed call raises StorageError; the worker backs off
        # and calls again, and the pool reconnects on that next call (a server restart included).
        options: dict[str, Any] = {
            "socket_timeout": float(socket_timeout),
            "socket_connect_timeout": float(socket_timeout),
            "retry": Retry(NoBackoff(), 0),
        }
        if url is not None:
            try:
                self.client: Redis = redis.Redis.from_url(url, **options)
            except ValueError as exc:
                raise ConfigError(
                    f"{where}.url", redact_url(url), f"a valid Redis URL ({_scrub(str(exc), url)})"
                ) from None
        else:
            self.client = redis.Redis(host=host, port=port, db=db, password=password, **options)
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self._no_script: type[Exception] = redis.exceptions.NoScriptError
        self._redis = redis
        kw = self.client.connection_pool.connection_kwargs
        #: Texts never shown in a message: the password (and the URL it came in).
        self._secrets = tuple(t for t in (kw.get("password"), password, url) if isinstance(t, str) and t)
        where_at = kw.get("path") or f"{kw.get('host', host)}:{kw.get('port', port)}"
        #: The server, as ``host:port/db`` (or ``socket-path/db``).
        self.address = f"{where_at}/{kw.get('db', db)}"

        def register(body: str) -> Script:  # EVALSHA; redis-py loads it again after NOSCRIPT
            return self.client.register_script(PRELUDE + body)

        self._push, self._reserve, self._ack = register(PUSH), register(RESERVE), register(ACK)
        self._push_ids = register(PUSH_IDS)
        self._release, self._bury, self._reclaim = register(RELEASE), register(BURY), register(RECLAIM)
        self._clear, self._dead = register(CLEAR), register(DEAD_LIST)
        self._requeue, self._purge = register(REQUEUE), register(PURGE)
        self._counts, self._next_at = register(COUNTS), register(NEXT_AT)
        self._list, self._cancel = register(LIST), register(CANCEL)
        self._heads: dict[tuple[Any, ...], str] = {}
        self._foreign = 0

    # -- round trips ----------------------------------------------------------------------------
    def _io(self, call: Callable[[], Any], key: str | None = None) -> Any:
        """One round trip; a Redis failure becomes a StorageError naming the server (and ``key``,
        the key a plain command was about) with the advice that fits its cause."""
        try:
            return call()
        except self._errors as exc:
            raise self._storage_error(exc, key) from None

    def _storage_error(self, exc: Exception, key: str | None) -> StorageError:
        errors = self._redis.exceptions
        text = _scrub(str(exc).rstrip("."), *self._secrets)
        server = f"Redis server {self.address}"
        if isinstance(exc, errors.ResponseError) and text.startswith("KHADEMKEY "):
            found = text[len("KHADEMKEY ") :].split(" script: ")[0]
            bad_key = found.split(" ", 1)[0]
            message = (
                f"{server}: {found}. The driver did not write it: the queue cannot use that key "
                f"until it is deleted or renamed (redis-cli -n DB DEL '{bad_key}', after keeping "
                "what you need). Nothing was changed."
            )
        elif isinstance(exc, errors.BusyLoadingError):
            message = (
                f"{server} is loading its data set into memory (after a restart): {text}. Wait "
                "until it has loaded; workers try again on their own, a dispatch can be tried "
                "again in a moment. Nothing was changed."
            )
        elif isinstance(exc, (errors.AuthenticationError, errors.AuthenticationWrongNumberOfArgsError)):
            message = (
                f"{server} refused the credentials: {text}. Check the driver's password (or the "
                "user and password in its url)."
            )
        elif isinstance(exc, (errors.ConnectionError, errors.TimeoutError)):
            message = (
                f"{server} (queue keys {self.prefix}*) cannot be used: {type(exc).__name__}: "
                f"{text}. Start redis-server there, or point the driver's host, port, db, password "
                "or url at a running one. Every change is one atomic script: nothing is ever "
                "half-written."
            )
        elif isinstance(exc, errors.NoPermissionError):
            message = f"{server} refuses this user the driver's commands: {text}. Grant them (ACL SETUSER)."
        elif isinstance(exc, errors.ReadOnlyError):
            message = f"{server} is a read-only replica: {text}. Point the driver at the primary."
        elif isinstance(exc, errors.OutOfMemoryError):
            message = f"{server} is out of memory: {text}. Free memory or raise maxmemory."

        elif isinstance(exc, errors.ResponseError):
            where = f"key {key}" if key else f"a key under {self.prefix}"
            message = (
                f"{server} refused a queue command ({where}): {type(exc).__name__}: {text}. A key "
                f"under {self.prefix} probably holds data the driver did not write: inspect it "
                "(redis-cli TYPE KEY), then delete or rename it. Every change is one script that "
                "checks before it writes."
            )
        else:
            message = f"{server} (queue keys {self.prefix}*) cannot be used: {type(exc).__name__}: {text}."
        return StorageError(message)

    def _script(self, script: Script, *args: str | int) -> Any:
        return self._io(lambda: script(keys=self._keys, args=args))

    def _first_score(self, key: str) -> float | None:
        first = self._io(lambda: self.client.zrange(key, 0, 0, withscores=True), key)
        return float(first[0][1]) if first else None

    def _noted(self, notes: Sequence[bytes]) -> None:
        """Log what a script took aside (it is kept in ``foreign`` and counted by get_stats)."""
        for note in notes:
            log.warning(
                "Redis queue %r on %s: %s (kept in %sforeign)",
                self.queue_name,
                self.address,
                note.decode("utf-8", "replace"),
                self.prefix,
            )

    def _taken(self, reply: Sequence[Any] | None) -> JobRecord | None:
        """The reserve script's reply: the job's fields (all false if none), then notes."""
        if reply is None:
            return None
        if len(reply) > RECORD_FIELDS:
            self._noted(reply[RECORD_FIELDS:])
        return None if reply[0] is None else _record(reply[:RECORD_FIELDS])

    def _reclaimed(self, reply: Sequence[Any]) -> list[JobRecord]:
        self._noted([item for item in reply if not isinstance(item, list)])
        return [_record(fields) for fields in reply if isinstance(fields, list)]

    # -- primitives -----------------------------------------------------------------------------
    async def push_records(self, records: Sequence[JobRecord]) -> None:
        """One script call for the whole batch: per run of jobs with one queue and available_at,
        the queue, the time and the count, then each job's body (ids are given by the script)."""
        args: list[str | int] = [len(records), repr(self.clock.time())]
        group: tuple[str, float] | None = None
        count_at = count = 0
        heads = self._heads
        tails: dict[tuple[float, float], str] = {}  # the two times of a body, as text, per batch
        for r in records:
            if (r.queue, r.available_at) != group:
                if group is not None:
                    args[count_at] = count
                group, count = (r.queue, r.available_at), 0
                args += (r.queue, repr(r.available_at), 0)
                count_at = len(args) - 1
            count += 1
            key = (r.timeout, r.queue, r.type, r.display_name, r.max_retries)
            head = heads.get(key) or self._head(key)
            tail = tails.get((r.created_at, r.available_at))
            if tail is None:
                tail = tails[(r.created_at, r.available_at)] = f",{r.created_at!r},{r.available_at!r}]\n"
            payload = r.payload_json
            if payload is None:
                payload = (
                    r.payload if isinstance(r.payload, str) else json.dumps(r.payload, separators=COMPACT)
                )
            args.append(head + tail + payload)  # the body: a JSON header line, the payload's JSON
        args[count_at] = count
        first = int(self._dispatch_io(lambda: self._push(keys=self._keys, args=args), None, len(records)))
        for offset, record in enumerate(records):
            record.seq = first + offset
            record.id = str(record.seq)  # unique across processes, and the same in every rerun

    async def push_new_records(
        self, records: Sequence[JobRecord], fingerprints: Sequence[str], now: float, remember_until: float
    ) -> list[str | None]:
        """One script call: the jobs whose ids are free are stored, the others reported."""
        args: list[str | int] = [repr(now), repr(remember_until)]
        for record, mark in zip(records, fingerprints, strict=True):
            payload = record.payload_json
            if payload is None:
                payload = json.dumps(record.payload, separators=COMPACT)
            key = (record.timeout, record.queue, record.type, record.display_name, record.max_retries)
            head = self._heads.get(key) or self._head(key)
            body = f"{head},{record.created_at!r},{record.available_at!r}]\n{payload}"
            args += (record.queue, repr(record.available_at), record.id, mark, body)
        ids = [record.id for record in records]
        replies = self._dispatch_io(lambda: self._push_ids(keys=self._keys, args=args), ids, len(ids))
        return [None if reply is None else reply.decode() for reply in replies]

    def _dispatch_io(self, call: Callable[[], Any], ids: list[str] | None, count: int) -> Any:
        """A dispatch's round trip: as :meth:`_io`, but a connection lost after the command was
        sent (a reply that never came) is DispatchOutcomeUnknown: the jobs may be stored."""
        errors = self._redis.exceptions
        try:
            return call()
        except (errors.ConnectionError, errors.TimeoutError) as exc:
            text = str(exc)
            refused = (
                errors.BusyLoadingError,
                errors.AuthenticationError,
                errors.AuthenticationWrongNumberOfArgsError,
            )
            if isinstance(exc, refused) or (
                isinstance(exc, errors.ConnectionError) and "connecting to" in text
            ):
                raise self._storage_error(exc, None) from None  # refused, or never connected: not run
            cause = f"Redis server {self.address}: {type(exc).__name__}: {_scrub(text, *self._secrets)}"
            raise DispatchOutcomeUnknown(ids, count, cause) from None
        except self._errors as exc:
            raise self._storage_error(exc, None) from None

    def _head(self, key: tuple[Any, ...]) -> str:
        """The body's header up to its two times: ``[timeout,queue,type,display_name,max_retries``."""
        if len(self._heads) >= HEADS_CACHED:
            self._heads.clear()
        head = self._heads[key] = json.dumps(list(key), separators=COMPACT)[:-1]
        return head

    async def reserve_record(
        self, queues: Sequence[str] | None, now: float, worker: str | None
    ) -> JobRecord | None:
        if queues is not None and not queues:
            return None
        lease = repr(self.lease_seconds)
        return self._taken(self._script(self._reserve, repr(now), lease, _opt(worker), *(queues or ())))

    async def take_records(
        self,
        acks: Sequence[JobRecord],
        queues: Sequence[str] | None,
        now: float,
        worker: str | None,
        limit: int,
    ) -> tuple[list[bool | None], list[JobRecord], list[JobRecord]]:
        """The acks, the lease recovery and ``limit`` reserves as scripts in one pipeline: one
        round trip. Each script runs atomically and they run in this order; the recovery costs the
        server one empty range lookup when no lease has ended."""
        if queues is not None and not queues:
            limit = 0  # no queue to take from (the script reads no queue names as "all queues")
        reserve_args = [repr(now), repr(self.lease_seconds), _opt(worker), *(queues or ())]

        calls: list[tuple[Script, list[Any]]] = [(self._ack, [r.id, r.attempts]) for r in acks]
        calls.append((self._reclaim, [repr(now), LEASE_EXPIRED_ERROR]))
        calls += [(self._reserve, reserve_args)] * limit
        replies = self._pipelined(calls)
        acked: list[bool | None] = [bool(reply) for reply in replies[: len(acks)]]
        reclaimed = self._reclaimed(replies[len(acks)])
        taken = [r for r in map(self._taken, replies[len(acks) + 1 :]) if r is not None]
        return acked, reclaimed, taken

    async def ack_records(self, records: Sequence[JobRecord]) -> list[bool | None]:
        """The ack scripts of several jobs in one pipeline: one round trip."""
        if len(records) == 1:
            return [await self.ack_record(records[0])]
        replies = self._pipelined([(self._ack, [r.id, r.attempts]) for r in records])
        return [bool(reply) for reply in replies]

    def _pipelined(self, calls: Sequence[tuple[Script, list[Any]]]) -> list[Any]:
        """Script calls by EVALSHA in one pipeline: one round trip, each script atomic, in order.
        (redis-py's own script pipelining first asks SCRIPT EXISTS: a second round trip.) After a
        server restart or SCRIPT FLUSH the server answers NOSCRIPT from that point on: the
        scripts are loaded and the calls that were refused run again, in order, so each call
        runs exactly once."""

        keys = self._keys

        def run() -> list[Any]:
            replies: list[Any] = []
            pending = list(calls)
            while pending:
                pipe = self.client.pipeline(transaction=False)
                for script, args in pending:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                answers = pipe.execute(raise_on_error=False)
                refused = next((n for n, a in enumerate(answers) if isinstance(a, self._no_script)), None)
                done = answers if refused is None else answers[:refused]
                for answer in done:
                    if isinstance(answer, Exception):
                        raise answer
                replies += done
                if refused is None:
                    break
                pending = pending[refused:]
                for script in {id(script): script for script, _ in pending}.values():
                    self.client.script_load(script.script)
            return replies

        return list(self._io(run))

    # A settle (ack, release, bury) only touches the reservation it was given: if the lease ran
    # out and another worker took the job since (attempts moved on), it is a no-op.
    async def ack_record(self, record: JobRecord) -> bool:
        return bool(self._script(self._ack, record.id, record.attempts))

    async def release_record(self, record: JobRecord) -> bool:
        seq = int(
            self._script(
                self._release,
                record.id,
                record.attempts,
                repr(record.available_at),
                _opt(record.last_error),
                _opt(record.error_type),
            )
        )
        if seq:
            record.seq = seq
        return seq != 0

    async def bury_record(self, record: JobRecord) -> bool:
        seq = int(
            self._script(
                self._bury,
                record.id,
                record.attempts,
                _opt(record.last_error),
                _opt(record.error_type),
                _opt(record.failed_at),
            )
        )
        if seq:
            record.seq = seq  # dead letters are listed in the order they died
        return seq != 0

    def lease_may_have_ended(self, now: float) -> bool:
        earliest = self._first_score(self._keys[2])
        return earliest is not None and earliest <= now

    async def reclaim_expired(self, now: float) -> list[JobRecord]:
        return self._reclaimed(self._script(self._reclaim, repr(now), LEASE_EXPIRED_ERROR))

    async def counts(self, now: float) -> QueueCounts:
        ready, waiting, held, foreign = self._script(self._counts, repr(now))  # one consistent view
        self._foreign = int(foreign)
        return QueueCounts(int(ready), int(waiting) - int(ready), int(held))

    async def next_available_at(self, queues: Sequence[str] | None) -> float | None:
        if queues is not None and not queues:
            return None
        earliest = self._script(self._next_at, *(queues or ()))
        return None if earliest is None else float(earliest)

    async def next_lease_expiry(self) -> float | None:
        return self._first_score(self._keys[2])

    async def clear_records(self) -> int:
        return int(self._script(self._clear))

    async def dead_records(self, limit: int | None = None) -> list[JobRecord]:
        if limit is not None and limit <= 0:
            return []
        return [_record(fields) for fields in self._script(self._dead, -1 if limit is None else limit - 1)]

    async def list_records(self, state: str, now: float, limit: int | None = None) -> list[JobRecord]:
        records = [_record(fields) for fields in self._script(self._list, repr(now), state)]
        if state == "reserved":
            records.sort(key=lambda r: (r.reserved_until or 0.0, r.seq))
        else:
            records.sort(key=lambda r: (r.available_at, r.seq))
        return records if limit is None else records[:limit]

    async def get_record(self, job_id: str) -> JobRecord | None:
        body, fields = self._read_job(job_id)
        if body is None and (fields is None or all(f is None for f in fields)):
            return None
        return _record([job_id.encode(), body, *(fields or [None] * len(FIELDS))])

    async def cancel_record(self, job_id: str) -> JobRecord | None:
        fields = self._script(self._cancel, job_id)
        return _record(fields) if fields else None

    def _read_job(self, job_id: str) -> tuple[Any, list[Any] | None]:
        """A job's body and state fields in one round trip (None for a key that holds another
        type: read as absent)."""

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=True)
            pipe.get(f"{self.prefix}job:{job_id}")
            pipe.hmget(f"{self.prefix}state:{job_id}", list(FIELDS))
            return list(pipe.execute(raise_on_error=False))

        body, fields = self._io(read)
        return (None if isinstance(body, Exception) else body), (
            None if isinstance(fields, Exception) else fields
        )

    async def get_dead_record(self, job_id: str) -> JobRecord | None:
        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=True)  # one round trip, one consistent view
            pipe.get(f"{self.prefix}job:{job_id}")
            pipe.hmget(f"{self.prefix}state:{job_id}", list(FIELDS))
            return list(pipe.execute(raise_on_error=False))

        body, fields = self._io(read)
        if isinstance(body, Exception):  # a key of the job that holds another type: read as absent
            body = None
        if isinstance(fields, Exception):
            return None
        return _record([job_id.encode(), body, *fields]) if fields[3] == b"dead" else None

    async def requeue_dead_records(self, job_ids: Sequence[str] | None, now: float) -> list[JobRecord]:
        ids = ["*"] if job_ids is None else ["", *dict.fromkeys(job_ids)]
        return [_record(fields) for fields in self._script(self._requeue, repr(now), *ids)]

    async def purge_dead_records(self, job_ids: Sequence[str] | None) -> list[JobRecord]:
        ids = ["*"] if job_ids is None else ["", *dict.fromkeys(job_ids)]
        return [_record(fields) for fields in self._script(self._purge, "", *ids)]

    async def storage_info(self) -> dict[str, Any]:
        """The server, the key prefix, and how many entries the driver did not write were taken
        aside (as of the last :meth:`counts`, which get_stats has just made)."""
        return {"redis_server": self.address, "key_prefix": self.prefix, "foreign_entries": self._foreign}

    async def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"RedisStorageDriver(name={self.name!r}, server={self.address!r}, prefix={self.prefix!r})"


# -- values ------------------------------------------------------------------------------------------
def _opt(value: object) -> str:
    """An optional script argument: "" for None, "=" + the text otherwise."""
    if value is None:
        return ""
    return "=" + (repr(value) if isinstance(value, float) else str(value))


def _payload_text(record: JobRecord) -> str:
    if isinstance(record.payload, str):  # a damaged payload, kept as it was read
        return record.payload
    return json.dumps(record.payload, separators=COMPACT)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(key: str, value: object, ok: bool, expected: str) -> None:
    if not ok:
        raise ConfigError(key, value, expected)


def _scrub(text: str, *secrets: str) -> str:
    """``text`` with every secret (a password, a URL that carries one) replaced by ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return str(redact_url(text))


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _header(text: str) -> list[Any] | None:
    """The body's header line ``[timeout, queue, type, display_name, max_retries, created_at,
    available_at]``, or None if it is not one the driver wrote (any field of the wrong kind)."""
    try:
        head = json.loads(text)
    except ValueError:
        return None
    if not isinstance(head, list) or len(head) != 7:
        return None
    timeout, queue, type_name, display_name, max_retries, created_at, first_at = head
    if (
        (timeout is not None and not _number(timeout))
        or not all(isinstance(t, str) for t in (queue, type_name, display_name))
        or not (_is_int(max_retries) and max_retries >= 0)
        or not (_number(created_at) and _number(first_at))
    ):
        return None
    return head


def _float(text: str | None, default: float | None) -> float | None:
    try:
        value = float(text) if text is not None else default
    except ValueError:
        return default
    return value if value is None or math.isfinite(value) else default


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


_STATUSES = {status.value: status for status in JobStatus}
#: How many values a script returns per job: its id, its body, then its state fields.
RECORD_FIELDS = 2 + len(FIELDS)


def _record(fields: Sequence[bytes | None]) -> JobRecord:
    """A record from a script's reply: the job's id, its body, then its state fields in the order
    of FIELDS. Absent fields keep a new job's values, or the header's. Never raises: a header or a
    field the driver did not write reads as damaged (the body is then kept whole as the payload,
    so running the job dead-letters it with the reason) or as a new job's value."""
    job_id, body, seq, available_at, attempts, status, until, by, error, error_type, failed_at, queue = (
        None if value is None else value.decode("utf-8", "replace") for value in fields
    )
    head_text, _, payload_text = (body or "").partition("\n")
    head = _header(head_text)
    if head is None:  # a damaged header: the body is kept whole, to report
        head = [None, "", "", "", 0, 0.0, 0.0]
        payload_text = body or ""
    timeout, head_queue, type_name, display_name, max_retries, created_at, first_at = head
    try:
        decoded = json.loads(payload_text)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to decode (not ours)
        decoded = None
    return JobRecord(
        id=job_id or "",
        type=type_name,
        queue=queue or head_queue,
        payload=decoded if isinstance(decoded, dict) else payload_text,  # damaged: kept to report
        display_name=display_name,
        max_retries=max_retries,
        timeout=None if timeout is None else float(timeout),
        available_at=_float(available_at, float(first_at)) or 0.0,
        created_at=float(created_at),
        seq=_int(seq, _int(job_id, 0)),
        attempts=_int(attempts, 0),
        status=_STATUSES.get(status or "pending", JobStatus.PENDING),
        reserved_until=_float(until, None),
        reserved_by=by,
        last_error=error,
        error_type=error_type,
        failed_at=_float(failed_at, None),
    )
