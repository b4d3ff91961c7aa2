"""RedisStorageDriver (``driver: redis``): jobs in Redis, shared by workers on any number of machines.

Every operation that changes the queue is one Lua script (the Laravel / BullMQ pattern), so it is
atomic: whatever runs a queue's scripts at the same time, on whatever machine, no job is taken
twice and none is half-written. The scripts are files, ``redis_scripts/NAME.lua`` in the package,
read at the first driver built (:func:`load_scripts`). All keys of a queue live under one prefix,
``khadem:{QUEUE_NAME}:``, the name encoded by :func:`key_part` (``%``, ``:``, ``{`` and ``}``
percent-encoded, as are job queue names in keys), so no two names share a key and the braces are a
Redis Cluster hash tag (one slot per queue); the layout is written once, in :mod:`.rediskeys`.
Entries and keys the driver did not write are handled as described at the top of
``redis_scripts/prelude.lua``:

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
EXPIRE or a blocking pop's timeout). On the system clock the calls go through redis-py's asyncio
client and are awaited, so concurrent calls overlap; on a simulation's clock they go through the
synchronous client: a round trip holds the event loop, so virtual time cannot move while a call is
in flight and nothing else runs in between, which keeps a Redis-backed queue deterministic under
:class:`~khadem_lab.simulation.Simulation` (see :meth:`RedisStorageDriver._overlaps`). Times that a
script computes (``reserved_until``) are stored with 17 significant digits, so they read back as the
very double Python would have computed.

redis-py is imported when a driver is built, so the rest of the package works without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..clock import SystemClock
from ..config import DriverConfig
from ..errors import ConfigError, DispatchOutcomeUnknown, StorageError
from ..records import LEASE_EXPIRED_ERROR, JobRecord, JobStatus, QueueCounts
from .base import BaseQueueDriver
from .redisconn import URL_SCHEMES, connect, pack_evalsha, parse_nodes, redact_url, scrub, storage_error
from .rediskeys import fixed_keys, job_keys, key_part, prefix_of, queue_keys
from .redislease import RENEW, renew
from .redisrecords import COMPACT, FIELDS, RECORD_FIELDS, as_record, is_int, opt_arg
from .redisscripts import load_scripts

__all__ = ["RedisStorageDriver", "key_part", "redact_url"]

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis
    from redis.commands.core import Script

log = logging.getLogger(__name__)
HEADS_CACHED = 256  # job headers (all but the two times) kept per driver, for batch dispatch


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
        cluster: bool = False,
        nodes: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        where = f"queue.drivers.{self.name}"
        _check(f"{where}.host", host, isinstance(host, str) and bool(host), "a host name")
        _check(f"{where}.port", port, is_int(port) and 0 < port < 65536, "an integer from 1 to 65535")
        _check(f"{where}.db", db, is_int(db) and db >= 0, "an integer >= 0")
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
            (is_int(socket_timeout) or isinstance(socket_timeout, float)) and socket_timeout > 0,
            "a positive number of seconds",
        )
        _check(f"{where}.cluster", cluster, isinstance(cluster, bool), "true or false")
        startup = parse_nodes(nodes)
        _check(
            f"{where}.nodes",
            nodes,
            nodes is None or startup is not None,
            'a list of "host:port" strings, one or more nodes of a Redis Cluster',
        )
        clustered = cluster or startup is not None
        _check(f"{where}.db", db, not clustered or db == 0, "0 (a Redis Cluster has only database 0)")
        try:
            import redis
            import redis.cluster
        except ImportError as exc:
            raise ConfigError(
                f"{where}.driver", "redis", "redis-py to be installed: pip install 'khadem-lab[redis]'"
            ) from exc
        self.queue_name = queue_name
        #: Every key of this queue starts with it; nothing else is ever touched. The name is
        #: encoded (:func:`key_part`) in a Redis Cluster hash tag: one slot per queue.
        self.prefix = prefix_of(queue_name)
        self._keys = fixed_keys(self.prefix)
        #: How a client is built (:meth:`_connect`): the synchronous one now, an asyncio one per
        #: event loop on the system clock.
        self._connect_options: dict[str, Any] = {
            "url": url,
            "host": host,
            "port": port,
            "db": db,
            "password": password,
            "timeout": float(socket_timeout),
            "nodes": startup,
            "cluster": clustered,
        }
        self._async_clients: dict[asyncio.AbstractEventLoop, AsyncRedis] = {}
        self._errors: tuple[type[Exception], ...] = (redis.RedisError, redis.exceptions.RedisClusterException)
        self._no_script: type[Exception] = redis.exceptions.NoScriptError
        self._redis = redis
        #: Texts never shown in a message: the password (and the URL it came in).
        self._secrets = tuple(t for t in (password, url) if isinstance(t, str) and t)
        if url is not None:
            try:
                kw = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
            except ValueError as exc:
                raise ConfigError(
                    f"{where}.url", redact_url(url), f"a valid Redis URL ({scrub(str(exc), url)})"
                ) from None
            self._secrets += tuple(t for t in [kw.get("password")] if isinstance(t, str) and t)
        else:
            kw = {}
        where_at = kw.get("path") or f"{kw.get('host', host)}:{kw.get('port', port)}"
        #: The server, as ``host:port/db`` (or ``socket-path/db``); for a Redis Cluster,
        #: ``cluster host:port,...`` (the nodes it was given).
        self.address = f"{where_at}/{kw.get('db', db)}"
        if clustered:
            self.address = "cluster " + (",".join(f"{h}:{p}" for h, p in startup) if startup else where_at)
        try:
            self.client: Redis = self._connect(asynchronous=False)
        except ValueError as exc:
            raise ConfigError(
                f"{where}.url", redact_url(url), f"a valid Redis URL ({scrub(str(exc), *self._secrets)})"
            ) from None
        except self._errors as exc:  # a cluster client asks the nodes for the slots at once
            raise self._storage_error(exc, None) from None

        scripts = {name: self.client.register_script(text) for name, text in load_scripts().items()}
        self._push, self._reserve, self._ack = scripts["push"], scripts["reserve"], scripts["ack"]
        self._release, self._bury, self._reclaim = scripts["release"], scripts["bury"], scripts["reclaim"]
        self._clear, self._dead = scripts["clear"], scripts["dead_list"]
        self._requeue, self._purge = scripts["requeue"], scripts["purge"]
        self._counts, self._next_at = scripts["counts"], scripts["next_at"]
        self._list, self._cancel = scripts["list"], scripts["cancel"]
        self._renew = self.client.register_script(RENEW)  # self-contained (no prelude): redislease
        self._push_ids, self._take = scripts["push_ids"], scripts["take"]
        self._heads: dict[tuple[Any, ...], str] = {}
        #: Dispatches waiting for their shared call, per (event loop, queue): see push_records.
        self._pushes: dict[
            tuple[asyncio.AbstractEventLoop, str], list[tuple[Sequence[JobRecord], asyncio.Future[None]]]
        ] = {}
        self._calls: set[asyncio.Task[None]] = set()
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
        return storage_error(exc, key, address=self.address, prefix=self.prefix, secrets=self._secrets)

    # Two ways to make a round trip, one set of scripts and replies. On the system clock, through
    # redis-py's asyncio client (one per event loop): the call is awaited, so the round trips of
    # concurrent dispatches and of a worker's slots overlap. On any other clock (a Simulation's),
    # through the synchronous client: the round trip holds the whole loop, so virtual time stands
    # still while it is in flight and nothing else runs in between; that is what keeps a
    # simulation's history the same, row for row, on every run. (Awaiting there, even with the
    # virtual loop's I/O hold, would let other tasks of the same instant run for as many loop
    # iterations as the reply takes in real time: their order would depend on the machine.)
    def _overlaps(self) -> bool:
        """True if this call is made through the asyncio client (the system clock)."""
        return type(self.clock) is SystemClock

    @property
    def acks_with_next_reserve(self) -> bool:
        """A worker taking jobs one by one sends a finished job's ack with its next reserve (one
        round trip per job), on the system clock; under a Simulation it acks at once, as before."""
        return self._overlaps()

    def _async_client(self) -> AsyncRedis:
        """This event loop's asyncio client (a client's connections belong to one loop)."""
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            for other in [old for old in self._async_clients if old.is_closed()]:
                del self._async_clients[other]  # its loop is gone, and its sockets with it
            client = self._async_clients[loop] = self._connect(asynchronous=True)
        return client

    def _connect(self, *, asynchronous: bool) -> Any:
        """A client, synchronous or asyncio, for one server or a Redis Cluster (see
        :func:`.redisconn.connect`)."""
        return connect(self._connect_options, asynchronous=asynchronous)

    async def _script(self, script: Script, *args: str | int, keys: Sequence[str] = ()) -> Any:
        """One script call by EVALSHA (loaded first if the server does not have it): one round trip.
        ``keys``: the keys the call can name besides the fixed ones (see :mod:`.rediskeys`)."""
        keys = [*self._keys, *keys]
        if not self._overlaps():
            return self._io(lambda: script(keys=keys, args=args))
        client = self._async_client()
        try:
            try:
                return await self._timed(self._evalsha(client, script, keys, args))
            except self._no_script:
                await self._timed(client.script_load(script.script))
                return await self._timed(self._evalsha(client, script, keys, args))
        except self._errors as exc:
            raise await self._failed(exc, None) from None

    async def _evalsha(
        self, client: Any, script: Script, keys: Sequence[str], args: Sequence[str | int]
    ) -> Any:
        """EVALSHA through the asyncio client. On one server the command is packed here
        (:func:`.redisconn.pack_evalsha`) and sent on a connection of the client's pool: redis-py's
        own path costs about 16 us more per call, plus about 2 us per argument (a script call of
        the eight slots of a worker carries about 60; bench/redis_cpu.py). The pool's connection
        is the client's as configured (password, TLS, db); a failure or a call cut short drops it,
        as redis-py does. A cluster client routes the call itself."""
        if self._connect_options["cluster"]:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        pool = client.connection_pool
        connection = await pool.get_connection()
        try:
            await connection.send_packed_command(pack_evalsha(script.sha, keys, args), check_health=False)
            return await connection.read_response()
        finally:
            await pool.release(connection)

    async def _timed(self, call: Awaitable[Any]) -> Any:
        """One call of the asyncio client, ended by the driver's ``socket_timeout`` as a redis-py
        TimeoutError (the client itself has none: its per-read and per-write timeouts cost about
        30 us of CPU a call, a third of a one-by-one worker's whole client time, bench/redis_cpu.py).
        redis-py drops a connection whose call was cut short, so no late reply is read as the next."""
        try:
            async with asyncio.timeout(self._connect_options["timeout"]):
                return await call
        except TimeoutError:
            raise self._redis.exceptions.TimeoutError(
                f"Timeout: no reply from {self.address} within {self._connect_options['timeout']:g} s"
            ) from None

    async def _failed(self, exc: Exception, key: str | None) -> StorageError:
        """:meth:`_storage_error` for a call of the asyncio client. On a Redis Cluster whose node
        could not be reached (it died, a failover is under way) this loop's client is dropped: the
        next call makes a new one, which asks the nodes it was given where the slots are now."""
        errors = self._redis.exceptions
        lost: tuple[type[Exception], ...] = (errors.ConnectionError, errors.TimeoutError)
        lost += (errors.ClusterError, errors.RedisClusterException)
        if self._connect_options["cluster"] and isinstance(exc, lost):
            client = self._async_clients.pop(asyncio.get_running_loop(), None)
            if client is not None:
                with contextlib.suppress(Exception):  # its connections are broken already
                    await client.aclose()
        return self._storage_error(exc, key)

    async def _first_score(self, key: str) -> float | None:
        if self._overlaps():
            try:
                first = await self._timed(self._async_client().zrange(key, 0, 0, withscores=True))
            except self._errors as exc:
                raise await self._failed(exc, key) from None
        else:
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
        return None if reply[0] is None else as_record(reply[:RECORD_FIELDS])

    def _reclaimed(self, reply: Sequence[Any]) -> list[JobRecord]:
        self._noted([item for item in reply if not isinstance(item, list)])
        return [as_record(fields) for fields in reply if isinstance(fields, list)]

    # -- primitives -----------------------------------------------------------------------------
    async def push_records(self, records: Sequence[JobRecord]) -> None:
        """One script call for the whole batch (:meth:`_store`). On the system clock, the dispatches
        of one queue made in one event-loop iteration (many coroutines dispatching at once) share
        that call: their jobs are stored one after another, in the order they were dispatched, as
        separate calls would store them (ids included), in one round trip; a failure reaches each
        of them (DispatchOutcomeUnknown counting its own jobs). Dispatches to different queues
        never share a call, so a queue whose keys hold another type fails only its own."""
        if not self._overlaps() or not records or any(r.queue != records[0].queue for r in records):
            await self._store(records)
            return
        loop = asyncio.get_running_loop()
        key = (loop, records[0].queue)
        future: asyncio.Future[None] = loop.create_future()
        waiting = self._pushes.get(key)
        if waiting is None:
            waiting = self._pushes[key] = []
            loop.call_soon(self._send_pushes, key)  # after the dispatches already ready in this iteration
        waiting.append((records, future))
        await future

    def _send_pushes(self, key: tuple[asyncio.AbstractEventLoop, str]) -> None:
        call = asyncio.ensure_future(self._push_together(self._pushes.pop(key)))
        self._calls.add(call)  # held, so a call in flight is not collected
        call.add_done_callback(self._calls.discard)

    async def _push_together(self, batch: list[tuple[Sequence[JobRecord], asyncio.Future[None]]]) -> None:
        try:
            await self._store([record for records, _ in batch for record in records])
        except BaseException as exc:
            for records, future in batch:
                if not future.done():
                    mine = exc
                    if isinstance(exc, DispatchOutcomeUnknown) and len(batch) > 1:
                        mine = DispatchOutcomeUnknown(None, len(records), exc.cause)
                    future.set_exception(mine)
            if not isinstance(exc, Exception):
                raise
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    async def _store(self, records: Sequence[JobRecord]) -> None:
        """One script call: per run of jobs with one queue and available_at, the queue, the time
        and the count, then each job's body (ids are given by the script)."""
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
        queues = queue_keys(self.prefix, (r.queue for r in records))
        first = int(await self._dispatch_script(self._push, args, queues, None, len(records)))
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
        queues = queue_keys(self.prefix, (r.queue for r in records))
        replies = await self._dispatch_script(self._push_ids, args, queues, ids, len(ids))
        return [None if reply is None else reply.decode() for reply in replies]

    async def _dispatch_script(
        self,
        script: Script,
        args: Sequence[str | int],
        keys: Sequence[str],
        ids: list[str] | None,
        count: int,
    ) -> Any:
        """A dispatch's script call: as :meth:`_script`, but a connection lost after the command
        was sent (a reply that never came) is DispatchOutcomeUnknown: the jobs may be stored."""
        errors = self._redis.exceptions
        all_keys = [*self._keys, *keys]
        try:
            if not self._overlaps():
                return script(keys=all_keys, args=args)
            client = self._async_client()
            try:
                return await self._timed(self._evalsha(client, script, all_keys, args))
            except self._no_script:
                await self._timed(client.script_load(script.script))
                return await self._timed(self._evalsha(client, script, all_keys, args))
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
            cause = f"Redis server {self.address}: {type(exc).__name__}: {scrub(text, *self._secrets)}"
            raise DispatchOutcomeUnknown(ids, count, cause) from None
        except self._errors as exc:
            raise (
                await self._failed(exc, None) if self._overlaps() else self._storage_error(exc, None)
            ) from None

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
        keys = queue_keys(self.prefix, queues or ())
        args = (repr(now), lease, opt_arg(worker), *(queues or ()))
        reply = await self._script(self._reserve, *args, keys=keys)
        return self._taken(reply)

    async def take_records_for(
        self,
        acks: Sequence[JobRecord],
        queues: Sequence[str] | None,
        now: float,
        workers: Sequence[tuple[str | None, int]],
    ) -> tuple[list[bool | None], list[JobRecord], list[JobRecord]]:
        """The acks, the lease recovery and the reserves of several takers (the slots of one
        worker that want a job at the same moment; ``take_records`` is the one-taker case) in one
        script call (``take.lua``): one round trip, one check of the queue's fixed keys. The steps
        run in this order, as the ack, reclaim and reserve scripts would one after another; the
        recovery costs the server one empty range lookup when no lease has ended. ``workers`` is
        (worker, how many jobs) per taker, served in order; the jobs reserved come back in that
        order, each reserved by its taker."""
        if queues is not None and not queues:
            workers = []  # no queue to take from (the script reads no queue names as "all queues")
        args: list[str | int] = [repr(now), repr(self.lease_seconds), len(acks)]
        keys: list[str] = []
        for record in acks:
            args += (record.id, record.attempts)
            keys += job_keys(self.prefix, record.id)
        args += (LEASE_EXPIRED_ERROR, len(workers))
        for worker, count in workers:
            args += (opt_arg(worker), count)
        if queues:
            args += queues
            keys += queue_keys(self.prefix, queues)
        acked, reclaimed, taken, notes = await self._script(self._take, *args, keys=keys)
        if notes:
            self._noted(notes)
        return [bool(a) for a in acked], [as_record(f) for f in reclaimed], [as_record(f) for f in taken]

    async def ack_records(self, records: Sequence[JobRecord]) -> list[bool | None]:
        """The acks of several jobs in one script call: one round trip."""
        args: list[str | int] = []
        keys: list[str] = []
        for record in records:
            args += (record.id, record.attempts)
            keys += job_keys(self.prefix, record.id)
        return [bool(reply) for reply in await self._script(self._ack, *args, keys=keys)]

    # A settle (ack, release, bury) only touches the reservation it was given: if the lease ran
    # out and another worker took the job since (attempts moved on), it is a no-op.
    async def ack_record(self, record: JobRecord) -> bool:
        keys = job_keys(self.prefix, record.id)
        (reply,) = await self._script(self._ack, record.id, record.attempts, keys=keys)
        acked = bool(reply)
        if acked:  # settled: a worker's heartbeat no longer renews it
            record.status, record.reserved_until = JobStatus.COMPLETED, None
        return acked

    async def release_record(self, record: JobRecord) -> bool:
        seq = int(
            await self._script(
                self._release,
                record.id,
                record.attempts,
                repr(record.available_at),
                opt_arg(record.last_error),
                opt_arg(record.error_type),
                keys=[*job_keys(self.prefix, record.id), *queue_keys(self.prefix, [record.queue])],
            )
        )
        if seq:
            record.seq = seq
        return seq != 0

    async def bury_record(self, record: JobRecord) -> bool:
        seq = int(
            await self._script(
                self._bury,
                record.id,
                record.attempts,
                opt_arg(record.last_error),
                opt_arg(record.error_type),
                opt_arg(record.failed_at),
                keys=job_keys(self.prefix, record.id),
            )
        )
        if seq:
            record.seq = seq  # dead letters are listed in the order they died
        return seq != 0

    async def renew_records(self, records: Sequence[JobRecord], now: float) -> list[bool | None]:
        return await renew(self, records, now)

    def lease_may_have_ended(self, now: float) -> bool:  # not async: asks the server synchronously
        key = self._keys[2]
        first = self._io(lambda: self.client.zrange(key, 0, 0, withscores=True), key)
        return bool(first) and float(first[0][1]) <= now

    async def reclaim_expired(self, now: float) -> list[JobRecord]:
        return self._reclaimed(await self._script(self._reclaim, repr(now), LEASE_EXPIRED_ERROR))

    async def counts(self, now: float) -> QueueCounts:
        ready, waiting, held, foreign = await self._script(self._counts, repr(now))  # one consistent view
        self._foreign = int(foreign)
        return QueueCounts(int(ready), int(waiting) - int(ready), int(held))

    async def next_available_at(self, queues: Sequence[str] | None) -> float | None:
        if queues is not None and not queues:
            return None
        earliest = await self._script(
            self._next_at, *(queues or ()), keys=queue_keys(self.prefix, queues or ())
        )
        return None if earliest is None else float(earliest)

    async def next_lease_expiry(self) -> float | None:
        return await self._first_score(self._keys[2])

    async def clear_records(self) -> int:
        return int(await self._script(self._clear))

    async def dead_records(self, limit: int | None = None) -> list[JobRecord]:
        if limit is not None and limit <= 0:
            return []
        last = -1 if limit is None else limit - 1
        return [as_record(fields) for fields in await self._script(self._dead, last)]

    async def list_records(self, state: str, now: float, limit: int | None = None) -> list[JobRecord]:
        records = [as_record(fields) for fields in await self._script(self._list, repr(now), state)]
        if state == "reserved":
            records.sort(key=lambda r: (r.reserved_until or 0.0, r.seq))
        else:
            records.sort(key=lambda r: (r.available_at, r.seq))
        return records if limit is None else records[:limit]

    async def get_record(self, job_id: str) -> JobRecord | None:
        body, fields = await self._read_job(job_id)
        if body is None and (fields is None or all(f is None for f in fields)):
            return None
        return as_record([job_id.encode(), body, *(fields or [None] * len(FIELDS))])

    async def cancel_record(self, job_id: str) -> JobRecord | None:
        fields = await self._script(self._cancel, job_id, keys=job_keys(self.prefix, job_id))
        return as_record(fields) if fields else None

    async def _read_job(self, job_id: str) -> tuple[Any, list[Any] | None]:
        """A job's body and state fields in one round trip, one consistent view (None for a key
        that holds another type: read as absent)."""
        overlaps = self._overlaps()
        job, state = job_keys(self.prefix, job_id)
        pipe: Any = (self._async_client() if overlaps else self.client).pipeline(transaction=True)
        pipe.get(job)
        pipe.hmget(state, list(FIELDS))
        if overlaps:
            try:
                body, fields = await self._timed(pipe.execute(raise_on_error=False))
            except self._errors as exc:
                raise await self._failed(exc, None) from None
        else:
            body, fields = self._io(lambda: pipe.execute(raise_on_error=False))
        return (None if isinstance(body, Exception) else body), (
            None if isinstance(fields, Exception) else fields
        )

    async def get_dead_record(self, job_id: str) -> JobRecord | None:
        body, fields = await self._read_job(job_id)
        if fields is None:
            return None
        return as_record([job_id.encode(), body, *fields]) if fields[3] == b"dead" else None

    async def requeue_dead_records(self, job_ids: Sequence[str] | None, now: float) -> list[JobRecord]:
        ids = ["*"] if job_ids is None else ["", *dict.fromkeys(job_ids)]
        keys = self._dead_keys(ids)
        return [as_record(fields) for fields in await self._script(self._requeue, repr(now), *ids, keys=keys)]

    async def purge_dead_records(self, job_ids: Sequence[str] | None) -> list[JobRecord]:
        ids = ["*"] if job_ids is None else ["", *dict.fromkeys(job_ids)]
        return [
            as_record(fields)
            for fields in await self._script(self._purge, "", *ids, keys=self._dead_keys(ids))
        ]

    def _dead_keys(self, ids: list[str]) -> list[str]:
        """The keys of the dead letters named (none when all are meant: found by the script)."""
        return [key for job_id in ids[1:] for key in job_keys(self.prefix, job_id)]

    async def storage_info(self) -> dict[str, Any]:
        """The server, the key prefix, and how many entries the driver did not write were taken
        aside (as of the last :meth:`counts`, which get_stats has just made)."""
        return {"redis_server": self.address, "key_prefix": self.prefix, "foreign_entries": self._foreign}

    async def close(self) -> None:
        self.client.close()
        clients, self._async_clients = self._async_clients, {}
        for loop, client in clients.items():
            if loop is asyncio.get_running_loop():
                await client.aclose()
            # (a client of another loop is dropped: its connections belong to that loop)

    def __repr__(self) -> str:
        return f"RedisStorageDriver(name={self.name!r}, server={self.address!r}, prefix={self.prefix!r})"


def _check(key: str, value: object, ok: bool, expected: str) -> None:
    if not ok:
        raise ConfigError(key, value, expected)
