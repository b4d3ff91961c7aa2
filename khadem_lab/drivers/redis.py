"""RedisStorageDriver (``driver: redis``): jobs in Redis, shared by workers on any number of machines.

Every operation that changes the queue is one Lua script (the Laravel / BullMQ pattern), so it is
atomic: whatever runs a queue's scripts at the same time, on whatever machine, no job is taken
twice and none is half-written. All keys of a queue live under one prefix, ``khadem:QUEUE_NAME:``:

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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..config import DriverConfig
from ..errors import ConfigError, StorageError
from ..records import LEASE_EXPIRED_ERROR, JobRecord, JobStatus, QueueCounts
from .base import BaseQueueDriver

if TYPE_CHECKING:
    from redis import Redis
    from redis.commands.core import Script

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

# Shared by every script. ARGV[1] is always the key prefix. An optional text argument is "" for
# None and "=" + the text otherwise (so an empty text is not None).
PRELUDE = (
    "local FIELDS = {"
    + ", ".join(f"'{name}'" for name in FIELDS)
    + "}\n"
    + """
local P = ARGV[1]
local function member(seq, id) return string.format('%020d:', tonumber(seq)) .. id end
local function id_of(m) return string.sub(m, 22) end
-- a job's id, body and state fields, as the client reads them
local function fetch(id)
  local fields = redis.call('HMGET', P .. 'state:' .. id, unpack(FIELDS))
  table.insert(fields, 1, redis.call('GET', P .. 'job:' .. id))
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
-- a ready-list entry 'AVAILABLE_AT|SEQ:ID' as its time and member
local function entry(e)
  local bar = string.find(e, '|', 1, true)
  return string.sub(e, 1, bar - 1), string.sub(e, bar + 1)
end
local function take_seq() return string.format('%d', redis.call('INCR', P .. 'seq')) end
local function enqueue(id, queue, at, seq)
  redis.call('ZADD', P .. 'queue:' .. queue, at, member(seq, id))
  redis.call('SADD', P .. 'queues', queue)
end
-- the reservation given (by its attempts) is still the current one: its seq, else nil
local function held(id, attempts)
  local state = redis.call('HMGET', P .. 'state:' .. id, 'status', 'attempts', 'seq')
  if state[1] ~= 'reserved' or state[2] ~= attempts then return nil end
  return state[3] or id
end
"""
)

# ARGV: prefix, how many jobs, now, then one group per run of jobs with the same queue and
# available_at: queue, available_at, k, then the k bodies; times as Python's repr, so no digit is
# lost in Lua numbers. Returns the first id given (ids are consecutive, in ARGV order). Ids come
# from INCRBY and never repeat (clear keeps the counter), so every job key is new.
PUSH = """
local n, now = tonumber(ARGV[2]), tonumber(ARGV[3])
local first = redis.call('INCRBY', P .. 'seq', n) - n + 1
local seq, i = first, 4
local sets = {}
local function set_jobs()
  if #sets > 0 then redis.call('MSET', unpack(sets)); sets = {} end
end
while i <= #ARGV do
  local queue, at, k = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local list, zset = P .. 'ready:' .. queue, P .. 'queue:' .. queue
  i = i + 3
  local tail = redis.call('LINDEX', list, -1)
  local t = tonumber(at)
  -- due, and not before the list's last entry: appended, in order; else the sorted set
  local listed = t <= now and (not tail or tonumber((entry(tail))) <= t)
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
  redis.call('SADD', P .. 'queues', queue)
end
set_jobs()
return first
"""

# ARGV: prefix, now, lease seconds, worker (optional), then the queues in priority order (none:
# all queues, by (available_at, seq) across them). Returns the reserved job's fields, or nil.
RESERVE = """
local now = ARGV[2]
-- the first due job of a queue: its member, available_at, and whether it heads the ready list
local function due(queue)
  local m, at, listed = nil, nil, false
  local head = redis.call('LINDEX', P .. 'ready:' .. queue, 0)
  if head then
    at, m = entry(head)
    if tonumber(at) > tonumber(now) then m, at = nil, nil else listed = true end
  end
  local z = redis.call('ZRANGEBYSCORE', P .. 'queue:' .. queue, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
  if z[1] and (not m or before(z[2], z[1], at, m)) then return z[1], z[2], false end
  return m, at, listed
end
-- take member m off its queue; reserve its job, or nil if the job is gone (keys removed by hand)
local function claim(queue, m, listed)
  local list, zset = P .. 'ready:' .. queue, P .. 'queue:' .. queue
  if listed then redis.call('LPOP', list) else redis.call('ZREM', zset, m) end
  if redis.call('EXISTS', list, zset) == 0 then redis.call('SREM', P .. 'queues', queue) end
  local id = id_of(m)
  local state = P .. 'state:' .. id
  local body = redis.call('GET', P .. 'job:' .. id)
  local status = redis.call('HGET', state, 'status')
  if not body or (status and status ~= 'pending') then return nil end
  local timeout = tonumber(string.match(body, '^%[([^,]*),') or '') or 0
  local untl = string.format('%.17g', tonumber(now) + tonumber(ARGV[3]) + timeout)
  redis.call('HINCRBY', state, 'attempts', 1)
  if ARGV[4] == '' then
    redis.call('HSET', state, 'status', 'reserved', 'reserved_until', untl, 'queue', queue)
  else
    redis.call('HSET', state, 'status', 'reserved', 'reserved_until', untl, 'queue', queue,
      'reserved_by', string.sub(ARGV[4], 2))
  end
  redis.call('ZADD', P .. 'reserved', untl, m)
  return fetch(id)
end
if #ARGV == 4 then
  while true do
    local best, best_at, best_queue, best_listed = nil, nil, nil, false
    for _, queue in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
      local m, at, listed = due(queue)
      if m and (not best or before(at, m, best_at, best)) then
        best, best_at, best_queue, best_listed = m, at, queue, listed
      end
    end
    if not best then return nil end
    local found = claim(best_queue, best, best_listed)
    if found then return found end
  end
end
for i = 5, #ARGV do
  while true do
    local m, _, listed = due(ARGV[i])
    if not m then break end
    local found = claim(ARGV[i], m, listed)
    if found then return found end
  end
end
return nil
"""

# ARGV: prefix, id, attempts. 1 if acknowledged, 0 if the reservation was not the current one.
ACK = """
local id = ARGV[2]
local seq = held(id, ARGV[3])
if not seq then return 0 end
redis.call('ZREM', P .. 'reserved', member(seq, id))
redis.call('DEL', P .. 'job:' .. id, P .. 'state:' .. id)
return 1
"""

# ARGV: prefix, id, attempts, available_at, last_error (optional), error_type (optional).
# Returns the new seq, or 0 if the reservation was not the current one.
RELEASE = """
local id = ARGV[2]
local state = P .. 'state:' .. id
local seq = held(id, ARGV[3])
if not seq then return 0 end
redis.call('ZREM', P .. 'reserved', member(seq, id))
local new = take_seq()
redis.call('HSET', state, 'status', 'pending', 'seq', new, 'available_at', ARGV[4])
redis.call('HDEL', state, 'reserved_until', 'reserved_by')
setopt(state, 'last_error', ARGV[5])
setopt(state, 'error_type', ARGV[6])
enqueue(id, redis.call('HGET', state, 'queue'), ARGV[4], new)
return tonumber(new)
"""

# ARGV: prefix, id, attempts, last_error, error_type, failed_at (each optional).
# Returns the new seq, or 0 if the reservation was not the current one.
BURY = """
local id = ARGV[2]
local state = P .. 'state:' .. id
local seq = held(id, ARGV[3])
if not seq then return 0 end
redis.call('ZREM', P .. 'reserved', member(seq, id))
local new = take_seq()
redis.call('HSET', state, 'status', 'dead', 'seq', new)
redis.call('HDEL', state, 'reserved_until', 'reserved_by')
setopt(state, 'last_error', ARGV[4])
setopt(state, 'error_type', ARGV[5])
setopt(state, 'failed_at', ARGV[6])
redis.call('ZADD', P .. 'dead', new, id)
return tonumber(new)
"""

# ARGV: prefix, now, the lease-expired message. Returns the fields of each job whose lease ended,
# in (reserved_until, seq) order, which is also the order they get their new seqs in. A job whose
# header cannot be read counts as having no retries left.
RECLAIM = """
local now = ARGV[2]
local function max_retries(body)
  local ok, head = pcall(cjson.decode, string.match(body or '', '^[^\\n]*'))
  if ok and type(head) == 'table' then return tonumber(head[5]) or 0 end
  return 0
end
local out = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', P .. 'reserved', '-inf', now)) do
  redis.call('ZREM', P .. 'reserved', m)
  local id = id_of(m)
  local state = P .. 'state:' .. id
  local current = redis.call('HMGET', state, 'status', 'attempts', 'queue')
  if current[1] == 'reserved' then
    local new = take_seq()
    redis.call('HDEL', state, 'reserved_until', 'reserved_by')
    if tonumber(current[2]) >= max_retries(redis.call('GET', P .. 'job:' .. id)) + 1 then
      redis.call('HSET', state, 'status', 'dead', 'seq', new, 'last_error', ARGV[3],
        'error_type', 'LeaseExpired', 'failed_at', now)
      redis.call('ZADD', P .. 'dead', new, id)
    else
      redis.call('HSET', state, 'status', 'pending', 'seq', new, 'available_at', now)
      enqueue(id, current[3], now, new)
    end
    out[#out + 1] = fetch(id)
  end
end
return out
"""

# ARGV: prefix, now. The waiting jobs that are due and all the waiting jobs, over every queue,
# and the reserved jobs: {ready, waiting, reserved}, one consistent view.
COUNTS = """
local now = tonumber(ARGV[2])
local ready, waiting = 0, 0
for _, queue in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
  local list, zset = P .. 'ready:' .. queue, P .. 'queue:' .. queue
  ready = ready + redis.call('ZCOUNT', zset, '-inf', ARGV[2])
  waiting = waiting + redis.call('ZCARD', zset) + redis.call('LLEN', list)
  local tail = redis.call('LINDEX', list, -1)
  if tail and tonumber((entry(tail))) <= now then ready = ready + redis.call('LLEN', list)
  elseif tail then  -- listed by a process whose clock is ahead of this one's: count the due ones
    for _, e in ipairs(redis.call('LRANGE', list, 0, -1)) do
      if tonumber((entry(e))) <= now then ready = ready + 1 end
    end
  end
end
return {ready, waiting, redis.call('ZCARD', P .. 'reserved')}
"""

# ARGV: prefix, then the queues (none: all). The earliest available_at among their waiting jobs
# (as stored, a string with every digit), or nil.
NEXT_AT = """
local queues = {}
for i = 2, #ARGV do queues[#queues + 1] = ARGV[i] end
if #ARGV == 1 then queues = redis.call('SMEMBERS', P .. 'queues') end
local best, best_at = nil, nil
local function consider(at)
  if at and (not best or tonumber(at) < best) then best, best_at = tonumber(at), at end
end
for _, queue in ipairs(queues) do
  consider(redis.call('ZRANGE', P .. 'queue:' .. queue, 0, 0, 'WITHSCORES')[2])
  local head = redis.call('LINDEX', P .. 'ready:' .. queue, 0)
  if head then consider((entry(head))) end
end
return best_at
"""

# ARGV: prefix. Removes every waiting and reserved job (not the dead letters); returns how many.
CLEAR = """
local n = 0
local function drop(m)
  local id = id_of(m)
  n = n + redis.call('DEL', P .. 'job:' .. id)
  redis.call('DEL', P .. 'state:' .. id)
end
local keys = {P .. 'reserved'}
for _, queue in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
  keys[#keys + 1] = P .. 'queue:' .. queue
  for _, e in ipairs(redis.call('LRANGE', P .. 'ready:' .. queue, 0, -1)) do
    local _, m = entry(e)
    drop(m)
  end
  redis.call('DEL', P .. 'ready:' .. queue)
end
for _, key in ipairs(keys) do
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do drop(m) end
  redis.call('DEL', key)
end
redis.call('DEL', P .. 'queues')
return n
"""

# ARGV: prefix, last index (-1: all). The dead letters' fields, oldest first.
DEAD = """
local out = {}
for _, id in ipairs(redis.call('ZRANGE', P .. 'dead', 0, tonumber(ARGV[2]))) do
  out[#out + 1] = fetch(id)
end
return out
"""

# The dead letters a requeue or purge acts on: ARGV[3] is '*' for all, else the ids from ARGV[4].
DEAD_IDS = """
local function dead_ids()
  if ARGV[3] == '*' then return redis.call('ZRANGE', P .. 'dead', 0, -1) end
  local ids = {}
  for i = 4, #ARGV do
    if redis.call('ZSCORE', P .. 'dead', ARGV[i]) then ids[#ids + 1] = ARGV[i] end
  end
  return ids
end
"""

# ARGV: prefix, now, '*' or '', ids. Dead letters back to pending, due now, attempts 0.
REQUEUE = (
    DEAD_IDS
    + """
local now = ARGV[2]
local out = {}
for _, id in ipairs(dead_ids()) do
  local state = P .. 'state:' .. id
  local new = take_seq()
  redis.call('ZREM', P .. 'dead', id)
  redis.call('HSET', state, 'status', 'pending', 'seq', new, 'attempts', '0', 'available_at', now)
  redis.call('HDEL', state, 'failed_at')
  enqueue(id, redis.call('HGET', state, 'queue'), now, new)
  out[#out + 1] = fetch(id)
end
return out
"""
)

# ARGV: prefix, unused, '*' or '', ids. Deletes dead letters; returns their fields.
PURGE = (
    DEAD_IDS
    + """
local out = {}
for _, id in ipairs(dead_ids()) do
  out[#out + 1] = fetch(id)
  redis.call('ZREM', P .. 'dead', id)
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
        _check(f"{where}.password", password, password is None or isinstance(password, str), "a string")
        _check(
            f"{where}.url",
            url,
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
        #: Every key of this queue starts with it; nothing else is ever touched.
        self.prefix = f"khadem:{queue_name}:"
        # No automatic retry: a script whose reply was lost may have run, and running a dispatch
        # twice would store the job twice. A failed call raises StorageError; the worker backs off
        # and calls again, and the pool reconnects on that next call (a server restart included).
        options: dict[str, Any] = {
            "socket_timeout": float(socket_timeout),
            "socket_connect_timeout": float(socket_timeout),
            "retry": Retry(NoBackoff(), 0),
        }
        if url is not None:
            self.client: Redis = redis.Redis.from_url(url, **options)
        else:
            self.client = redis.Redis(host=host, port=port, db=db, password=password, **options)
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self._no_script: type[Exception] = redis.exceptions.NoScriptError
        kw = self.client.connection_pool.connection_kwargs
        where_at = kw.get("path") or f"{kw.get('host', host)}:{kw.get('port', port)}"
        #: The server, as ``host:port/db`` (or ``socket-path/db``).
        self.address = f"{where_at}/{kw.get('db', db)}"

        def register(body: str) -> Script:  # EVALSHA; redis-py loads it again after NOSCRIPT
            return self.client.register_script(PRELUDE + body)

        self._push, self._reserve, self._ack = register(PUSH), register(RESERVE), register(ACK)
        self._release, self._bury, self._reclaim = register(RELEASE), register(BURY), register(RECLAIM)
        self._clear, self._dead = register(CLEAR), register(DEAD)
        self._requeue, self._purge = register(REQUEUE), register(PURGE)
        self._counts, self._next_at = register(COUNTS), register(NEXT_AT)
        self._heads: dict[tuple[Any, ...], str] = {}

    # -- round trips ----------------------------------------------------------------------------
    def _io(self, call: Callable[[], Any]) -> Any:
        """One round trip; a Redis failure becomes a StorageError naming the server."""
        try:
            return call()
        except self._errors as exc:
            raise StorageError(
                f"Redis server {self.address} (queue keys {self.prefix}*) cannot be used: "
                f"{type(exc).__name__}: {str(exc).rstrip('.')}. Start redis-server there, or point the "
                "driver's host, port, db, password or url at a running one. Every change is one "
                "atomic script: nothing is ever half-written."
            ) from exc

    def _script(self, script: Script, *args: str | int) -> Any:
        return self._io(lambda: script(args=[self.prefix, *args]))

    def _first_score(self, key: str) -> float | None:
        first = self._io(lambda: self.client.zrange(key, 0, 0, withscores=True))
        return float(first[0][1]) if first else None

    # -- primitives -----------------------------------------------------------------------------
    async def push_records(self, records: Sequence[JobRecord]) -> None:
        """One script call for the whole batch: per run of jobs with one queue and available_at,
        the queue, the time and the count, then each job's body (ids are given by the script)."""
        args: list[str | int] = [self.prefix, len(records), repr(self.clock.time())]
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
        first = int(self._io(lambda: self._push(args=args)))
        for offset, record in enumerate(records):
            record.seq = first + offset
            record.id = str(record.seq)  # unique across processes, and the same in every rerun

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
        fields = self._script(self._reserve, repr(now), lease, _opt(worker), *(queues or ()))
        return None if fields is None else _record(fields)

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
        prefix = self.prefix
        reserve_args = [prefix, repr(now), repr(self.lease_seconds), _opt(worker), *(queues or ())]

        calls: list[tuple[Script, list[Any]]] = [(self._ack, [prefix, r.id, r.attempts]) for r in acks]
        calls.append((self._reclaim, [prefix, repr(now), LEASE_EXPIRED_ERROR]))
        calls += [(self._reserve, reserve_args)] * limit
        replies = self._pipelined(calls)
        acked: list[bool | None] = [bool(reply) for reply in replies[: len(acks)]]
        reclaimed = [_record(fields) for fields in replies[len(acks)]]
        taken = [_record(fields) for fields in replies[len(acks) + 1 :] if fields is not None]
        return acked, reclaimed, taken

    async def ack_records(self, records: Sequence[JobRecord]) -> list[bool | None]:
        """The ack scripts of several jobs in one pipeline: one round trip."""
        if len(records) == 1:
            return [await self.ack_record(records[0])]
        replies = self._pipelined([(self._ack, [self.prefix, r.id, r.attempts]) for r in records])
        return [bool(reply) for reply in replies]

    def _pipelined(self, calls: Sequence[tuple[Script, list[Any]]]) -> list[Any]:
        """Script calls by EVALSHA in one pipeline: one round trip, each script atomic, in order.
        (redis-py's own script pipelining first asks SCRIPT EXISTS: a second round trip.) After a
        server restart or SCRIPT FLUSH the server answers NOSCRIPT from that point on: the
        scripts are loaded and the calls that were refused run again, in order, so each call
        runs exactly once."""

        def run() -> list[Any]:
            replies: list[Any] = []
            pending = list(calls)
            while pending:
                pipe = self.client.pipeline(transaction=False)
                for script, args in pending:
                    pipe.evalsha(script.sha, 0, *args)
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
        earliest = self._first_score(self.prefix + "reserved")
        return earliest is not None and earliest <= now

    async def reclaim_expired(self, now: float) -> list[JobRecord]:
        return [_record(fields) for fields in self._script(self._reclaim, repr(now), LEASE_EXPIRED_ERROR)]

    async def counts(self, now: float) -> QueueCounts:
        ready, waiting, held = self._script(self._counts, repr(now))  # one consistent view
        return QueueCounts(int(ready), int(waiting) - int(ready), int(held))

    async def next_available_at(self, queues: Sequence[str] | None) -> float | None:
        if queues is not None and not queues:
            return None
        earliest = self._script(self._next_at, *(queues or ()))
        return None if earliest is None else float(earliest)

    async def next_lease_expiry(self) -> float | None:
        return self._first_score(self.prefix + "reserved")

    async def clear_records(self) -> int:
        return int(self._script(self._clear))

    async def dead_records(self, limit: int | None = None) -> list[JobRecord]:
        if limit is not None and limit <= 0:
            return []
        return [_record(fields) for fields in self._script(self._dead, -1 if limit is None else limit - 1)]

    async def get_dead_record(self, job_id: str) -> JobRecord | None:
        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=True)  # one round trip, one consistent view
            pipe.get(f"{self.prefix}job:{job_id}")
            pipe.hmget(f"{self.prefix}state:{job_id}", list(FIELDS))
            return list(pipe.execute())

        body, fields = self._io(read)
        return _record([job_id.encode(), body, *fields]) if fields[3] == b"dead" else None

    async def requeue_dead_records(self, job_ids: Sequence[str] | None, now: float) -> list[JobRecord]:
        ids = ["*"] if job_ids is None else ["", *dict.fromkeys(job_ids)]
        return [_record(fields) for fields in self._script(self._requeue, repr(now), *ids)]

    async def purge_dead_records(self, job_ids: Sequence[str] | None) -> list[JobRecord]:
        ids = ["*"] if job_ids is None else ["", *dict.fromkeys(job_ids)]
        return [_record(fields) for fields in self._script(self._purge, "", *ids)]

    async def storage_info(self) -> dict[str, Any]:
        return {"redis_server": self.address, "key_prefix": self.prefix}

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


def _record(fields: Sequence[bytes | None]) -> JobRecord:
    """A record from a script's reply: the job's id, its body, then its state fields in the order
    of FIELDS. Absent fields keep a new job's values, or the header's."""
    job_id, body, seq, available_at, attempts, status, until, by, error, error_type, failed_at, queue = (
        None if value is None else value.decode("utf-8", "replace") for value in fields
    )
    head_text, _, payload_text = (body or "").partition("\n")
    try:
        head = json.loads(head_text)
        timeout, head_queue, type_name, display_name, max_retries, created_at, first_at = head
    except (ValueError, TypeError):  # a damaged header: the body is kept whole, to report
        timeout, head_queue, type_name, display_name, max_retries, created_at, first_at = (
            None, "", "", "", 0, 0.0, 0.0
        )  # fmt: skip
        payload_text = body or ""
    try:
        decoded = json.loads(payload_text)
    except ValueError:
        decoded = None
    return JobRecord(
        id=job_id or "",
        type=str(type_name),
        queue=queue or str(head_queue),
        payload=decoded if isinstance(decoded, dict) else payload_text,  # damaged: kept to report
        display_name=str(display_name),
        max_retries=int(max_retries),
        timeout=None if timeout is None else float(timeout),
        available_at=float(available_at or first_at),
        created_at=float(created_at),
        seq=int(seq or job_id or 0),
        attempts=int(attempts or 0),
        status=JobStatus(status or "pending"),
        reserved_until=None if until is None else float(until),
        reserved_by=by,
        last_error=error,
        error_type=error_type,
        failed_at=None if failed_at is None else float(failed_at),
    )
