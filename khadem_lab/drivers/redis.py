"""RedisStorageDriver (``driver: redis``): jobs in Redis, shared by workers on any number of machines.

Every operation that changes the queue is one Lua script (the Laravel / BullMQ pattern), so it is
atomic: whatever runs a queue's scripts at the same time, on whatever machine, no job is taken
twice and none is half-written. All keys of a queue live under one prefix, ``khadem:QUEUE_NAME:``:

- ``seq``: the counter ids and sequence numbers come from (``INCR``), so ids are unique across
  processes and the same in every rerun of a simulation;
- ``job:ID``: a hash, one field per :class:`~khadem_lab.records.JobRecord` field (None: absent);
- ``pending`` and ``queue:NAME``: sorted sets of the waiting jobs, of all queues and of one queue,
  scored by ``available_at``; members are ``SEQ:ID`` with the sequence number zero-padded to 20
  digits, so ties at one instant are ordered by seq: the order is exactly ``(available_at, seq)``;
- ``queues``: the set of queue names with waiting jobs (for ``clear``);
- ``reserved``: a sorted set of the reserved jobs (``SEQ:ID``) scored by ``reserved_until``;
- ``dead``: a sorted set of the dead letters (``ID``) scored by the seq they died with.

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
from ..records import JobRecord, JobStatus, QueueCounts
from .base import BaseQueueDriver

if TYPE_CHECKING:
    from redis import Redis
    from redis.commands.core import Script

FIELDS = (
    "id",
    "seq",
    "queue",
    "type",
    "payload",
    "display_name",
    "max_retries",
    "timeout",
    "available_at",
    "created_at",
    "attempts",
    "status",
    "reserved_until",
    "reserved_by",
    "last_error",
    "error_type",
    "failed_at",
)
LEASE_EXPIRED = "LeaseExpired: its worker stopped during the last attempt"
URL_SCHEMES = ("redis://", "rediss://", "unix://")

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
local function fetch(job) return redis.call('HMGET', job, unpack(FIELDS)) end
local function setopt(job, field, value)
  if value == '' then redis.call('HDEL', job, field)
  else redis.call('HSET', job, field, string.sub(value, 2)) end
end
local function take_seq() return string.format('%d', redis.call('INCR', P .. 'seq')) end
local function enqueue(id, queue, at, seq)
  local m = member(seq, id)
  redis.call('ZADD', P .. 'pending', at, m)
  redis.call('ZADD', P .. 'queue:' .. queue, at, m)
  redis.call('SADD', P .. 'queues', queue)
end
-- the reservation given (by its attempts) is still the current one: its seq, else nil
local function held(job, attempts)
  local state = redis.call('HMGET', job, 'status', 'attempts', 'seq')
  if state[1] ~= 'reserved' or state[2] ~= attempts then return nil end
  return state[3]
end
"""
)

# ARGV: prefix, then one JSON array of the records, each [queue, type, payload, display_name,
# max_retries, timeout (optional), available_at, created_at], all strings (times as Python's
# repr, so no digit is lost in Lua numbers). Returns the first seq (= id) given. Ids come from
# INCRBY and never repeat (clear keeps the counter), so each job hash is new: one HSET per job;
# the sorted-set members go in with one ZADD per key for up to 500 jobs.
PUSH = """
local jobs = cjson.decode(ARGV[2])
local n = #jobs
local first = redis.call('INCRBY', P .. 'seq', n) - n + 1
local adds, queues = {}, {}
local function flush()
  for key, args in pairs(adds) do redis.call('ZADD', key, unpack(args)) end
  adds = {}
end
local function add(key, score, m)
  local args = adds[key]
  if args == nil then args = {}; adds[key] = args end
  args[#args + 1] = score
  args[#args + 1] = m
end
for i = 1, n do
  local j = jobs[i]
  local id = string.format('%d', first + i - 1)
  local job = P .. 'job:' .. id
  if j[6] == '' then
    redis.call('HSET', job, 'id', id, 'seq', id, 'queue', j[1], 'type', j[2], 'payload', j[3],
      'display_name', j[4], 'max_retries', j[5], 'available_at', j[7], 'created_at', j[8],
      'attempts', '0', 'status', 'pending')
  else
    redis.call('HSET', job, 'id', id, 'seq', id, 'queue', j[1], 'type', j[2], 'payload', j[3],
      'display_name', j[4], 'max_retries', j[5], 'available_at', j[7], 'created_at', j[8],
      'attempts', '0', 'status', 'pending', 'timeout', string.sub(j[6], 2))
  end
  local m = member(id, id)
  add(P .. 'pending', j[7], m)
  add(P .. 'queue:' .. j[1], j[7], m)
  queues[j[1]] = true
  if i % 500 == 0 then flush() end
end
flush()
for q in pairs(queues) do redis.call('SADD', P .. 'queues', q) end
return first
"""

# ARGV: prefix, now, lease seconds, worker (optional), then the queues in priority order (none:
# all queues by (available_at, seq)). Returns the reserved job's fields, or nil.
RESERVE = """
local now = ARGV[2]
local function take(key)
  while true do
    local m = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, 1)[1]
    if not m then return nil end
    local job = P .. 'job:' .. id_of(m)
    local queue = redis.call('HGET', job, 'queue')
    redis.call('ZREM', P .. 'pending', m)
    if queue then redis.call('ZREM', P .. 'queue:' .. queue, m) end
    if queue and redis.call('HGET', job, 'status') == 'pending' then
      local timeout = tonumber(redis.call('HGET', job, 'timeout') or '0')
      local untl = string.format('%.17g', tonumber(now) + tonumber(ARGV[3]) + timeout)
      redis.call('HINCRBY', job, 'attempts', 1)
      redis.call('HSET', job, 'status', 'reserved', 'reserved_until', untl)
      setopt(job, 'reserved_by', ARGV[4])
      redis.call('ZADD', P .. 'reserved', untl, m)
      return fetch(job)
    end
    -- a member whose job hash is gone (keys removed by hand) is dropped; look again
  end
end
if #ARGV == 4 then return take(P .. 'pending') end
for i = 5, #ARGV do
  local found = take(P .. 'queue:' .. ARGV[i])
  if found then return found end
end
return nil
"""

# ARGV: prefix, id, attempts. 1 if acknowledged, 0 if the reservation was not the current one.
ACK = """
local id = ARGV[2]
local job = P .. 'job:' .. id
local seq = held(job, ARGV[3])
if not seq then return 0 end
redis.call('ZREM', P .. 'reserved', member(seq, id))
redis.call('DEL', job)
return 1
"""

# ARGV: prefix, id, attempts, available_at, last_error (optional), error_type (optional).
# Returns the new seq, or 0 if the reservation was not the current one.
RELEASE = """
local id = ARGV[2]
local job = P .. 'job:' .. id
local seq = held(job, ARGV[3])
if not seq then return 0 end
redis.call('ZREM', P .. 'reserved', member(seq, id))
local new = take_seq()
redis.call('HSET', job, 'status', 'pending', 'seq', new, 'available_at', ARGV[4])
redis.call('HDEL', job, 'reserved_until', 'reserved_by')
setopt(job, 'last_error', ARGV[5])
setopt(job, 'error_type', ARGV[6])
enqueue(id, redis.call('HGET', job, 'queue'), ARGV[4], new)
return tonumber(new)
"""

# ARGV: prefix, id, attempts, last_error, error_type, failed_at (each optional).
# Returns the new seq, or 0 if the reservation was not the current one.
BURY = """
local id = ARGV[2]
local job = P .. 'job:' .. id
local seq = held(job, ARGV[3])
if not seq then return 0 end
redis.call('ZREM', P .. 'reserved', member(seq, id))
local new = take_seq()
redis.call('HSET', job, 'status', 'dead', 'seq', new)
redis.call('HDEL', job, 'reserved_until', 'reserved_by')
setopt(job, 'last_error', ARGV[4])
setopt(job, 'error_type', ARGV[5])
setopt(job, 'failed_at', ARGV[6])
redis.call('ZADD', P .. 'dead', new, id)
return tonumber(new)
"""

# ARGV: prefix, now, the lease-expired message. Returns the fields of each job whose lease ended,
# in (reserved_until, seq) order, which is also the order they get their new seqs in.
RECLAIM = """
local now = ARGV[2]
local out = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', P .. 'reserved', '-inf', now)) do
  redis.call('ZREM', P .. 'reserved', m)
  local id = id_of(m)
  local job = P .. 'job:' .. id
  local state = redis.call('HMGET', job, 'status', 'attempts', 'max_retries', 'queue')
  if state[1] == 'reserved' then
    local new = take_seq()
    redis.call('HDEL', job, 'reserved_until', 'reserved_by')
    if tonumber(state[2]) >= tonumber(state[3]) + 1 then
      redis.call('HSET', job, 'status', 'dead', 'seq', new, 'last_error', ARGV[3],
        'error_type', 'LeaseExpired', 'failed_at', now)
      redis.call('ZADD', P .. 'dead', new, id)
    else
      redis.call('HSET', job, 'status', 'pending', 'seq', new, 'available_at', now)
      enqueue(id, state[4], now, new)
    end
    out[#out + 1] = fetch(job)
  end
end
return out
"""

# ARGV: prefix. Removes every waiting and reserved job (not the dead letters); returns how many.
CLEAR = """
local n = 0
for _, key in ipairs({P .. 'pending', P .. 'reserved'}) do
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    n = n + redis.call('DEL', P .. 'job:' .. id_of(m))
  end
  redis.call('DEL', key)
end
for _, queue in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
  redis.call('DEL', P .. 'queue:' .. queue)
end
redis.call('DEL', P .. 'queues')
return n
"""

# ARGV: prefix, last index (-1: all). The dead letters' fields, oldest first.
DEAD = """
local out = {}
for _, id in ipairs(redis.call('ZRANGE', P .. 'dead', 0, tonumber(ARGV[2]))) do
  out[#out + 1] = fetch(P .. 'job:' .. id)
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
  local job = P .. 'job:' .. id
  local new = take_seq()
  redis.call('ZREM', P .. 'dead', id)
  redis.call('HSET', job, 'status', 'pending', 'seq', new, 'attempts', '0', 'available_at', now)
  redis.call('HDEL', job, 'failed_at')
  enqueue(id, redis.call('HGET', job, 'queue'), now, new)
  out[#out + 1] = fetch(job)
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
  local job = P .. 'job:' .. id
  out[#out + 1] = fetch(job)
  redis.call('ZREM', P .. 'dead', id)
  redis.call('DEL', job)
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
        rows = json.dumps(
            [
                [
                    r.queue,
                    r.type,
                    r.payload if isinstance(r.payload, str) else json.dumps(r.payload),
                    r.display_name,
                    str(r.max_retries),
                    _opt(r.timeout),
                    repr(r.available_at),
                    repr(r.created_at),
                ]
                for r in records
            ]
        )
        first = int(self._script(self._push, rows))  # one script call for the whole batch
        for offset, record in enumerate(records):
            record.seq = first + offset
            record.id = str(record.seq)  # unique across processes, and the same in every rerun

    async def reserve_record(
        self, queues: Sequence[str] | None, now: float, worker: str | None
    ) -> JobRecord | None:
        if queues is not None and not queues:
            return None
        lease = repr(self.lease_seconds)
        fields = self._script(self._reserve, repr(now), lease, _opt(worker), *(queues or ()))
        return None if fields is None else _record(fields)

    async def reserve_records(
        self, queues: Sequence[str] | None, now: float, worker: str | None, limit: int
    ) -> list[JobRecord]:
        """``limit`` reserve scripts in one pipeline: one round trip; each runs atomically."""
        if limit == 1 or (queues is not None and not queues):
            record = await self.reserve_record(queues, now, worker)
            return [] if record is None else [record]
        args = [self.prefix, repr(now), repr(self.lease_seconds), _opt(worker), *(queues or ())]
        replies = self._pipelined(lambda pipe: [self._reserve(args=args, client=pipe) for _ in range(limit)])
        return [_record(fields) for fields in replies if fields is not None]

    async def ack_records(self, records: Sequence[JobRecord]) -> list[bool | None]:
        """The ack scripts of several jobs in one pipeline: one round trip."""
        if len(records) == 1:
            return [await self.ack_record(records[0])]
        replies = self._pipelined(
            lambda pipe: [self._ack(args=[self.prefix, r.id, r.attempts], client=pipe) for r in records]
        )
        return [bool(reply) for reply in replies]

    def _pipelined(self, queue_calls: Callable[[Any], object]) -> list[Any]:
        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            queue_calls(pipe)
            return list(pipe.execute())

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
        return [_record(fields) for fields in self._script(self._reclaim, repr(now), LEASE_EXPIRED)]

    async def counts(self, now: float) -> QueueCounts:
        pending, reserved = self.prefix + "pending", self.prefix + "reserved"

        def read() -> Any:
            pipe = self.client.pipeline(transaction=True)  # one round trip, one consistent view
            pipe.zcount(pending, "-inf", repr(now))
            pipe.zcard(pending)
            pipe.zcard(reserved)
            return pipe.execute()

        ready, waiting, held = self._io(read)
        return QueueCounts(int(ready), int(waiting) - int(ready), int(held))

    async def next_available_at(self, queues: Sequence[str] | None) -> float | None:
        if queues is None:
            return self._first_score(self.prefix + "pending")
        if not queues:
            return None

        def read() -> Any:
            pipe = self.client.pipeline(transaction=False)
            for queue in queues:
                pipe.zrange(f"{self.prefix}queue:{queue}", 0, 0, withscores=True)
            return pipe.execute()

        firsts = [float(first[0][1]) for first in self._io(read) if first]
        return min(firsts, default=None)

    async def next_lease_expiry(self) -> float | None:
        return self._first_score(self.prefix + "reserved")

    async def clear_records(self) -> int:
        return int(self._script(self._clear))

    async def dead_records(self, limit: int | None = None) -> list[JobRecord]:
        if limit is not None and limit <= 0:
            return []
        return [_record(fields) for fields in self._script(self._dead, -1 if limit is None else limit - 1)]

    async def get_dead_record(self, job_id: str) -> JobRecord | None:
        fields = self._io(lambda: self.client.hmget(f"{self.prefix}job:{job_id}", list(FIELDS)))
        return _record(fields) if fields[11] == b"dead" else None

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


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(key: str, value: object, ok: bool, expected: str) -> None:
    if not ok:
        raise ConfigError(key, value, expected)


def _record(fields: Sequence[bytes | None]) -> JobRecord:
    """A record from a job hash's fields, in the order of FIELDS."""
    text = [None if value is None else value.decode("utf-8", "replace") for value in fields]

    def number(index: int) -> float | None:
        value = text[index]
        return None if value is None else float(value)

    try:
        decoded = json.loads(text[4] or "")
    except ValueError:
        decoded = None
    payload = decoded if isinstance(decoded, dict) else str(text[4])  # damaged: kept to report
    return JobRecord(
        id=text[0] or "",
        type=text[3] or "",
        queue=text[2] or "",
        payload=payload,
        display_name=text[5] or "",
        max_retries=int(number(6) or 0),
        timeout=number(7),
        available_at=number(8) or 0.0,
        created_at=number(9) or 0.0,
        seq=int(number(1) or 0),
        attempts=int(number(10) or 0),
        status=JobStatus(text[11] or "pending"),
        reserved_until=number(12),
        reserved_by=text[13],
        last_error=text[14],
        error_type=text[15],
        failed_at=number(16),
    )
