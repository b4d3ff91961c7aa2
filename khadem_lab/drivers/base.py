"""The driver contract: storage primitives below, the spec's driver API built once on top.

A driver stores :class:`~khadem_lab.records.JobRecord` objects; it never runs jobs itself. A new
driver implements only the primitives marked "primitive" (each says what it must do, what it
returns and its empty case). ``push``, ``process``, ``get_stats``, the dead-letter operations and
the event stream come from this base class, so every driver behaves the same way.

Every primitive takes "now" as an argument: drivers never read a clock of their own (no server
TIME, no CURRENT_TIMESTAMP), so a driver works the same on real and on virtual time.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal, ParamSpec, TypeVar

from ..clock import Clock, SystemClock, to_seconds, to_timestamp
from ..config import DriverConfig
from ..errors import JobIdConflict, KhademLabError, UnregisteredJobError
from ..events import EventBus, EventKind, QueueEvent
from ..job import QueueJob, option_overridden
from ..metrics import QueueMetrics
from ..records import JobRecord, JobStatus, QueueCounts
from ..registry import JobRegistry, default_registry
from ..serialization import encode_payload_json
from .jobids import REMEMBER_JOB_IDS, check_job_id, check_job_ids, fingerprint

log = logging.getLogger(__name__)
#: The states :meth:`BaseQueueDriver.list_records` lists.
LIST_STATES = ("ready", "delayed", "reserved")
P = ParamSpec("P")
_new_event = tuple.__new__  # builds a QueueEvent without NamedTuple's Python-level __new__
R = TypeVar("R")
_RESERVED, _DISPATCHED = EventKind.RESERVED, EventKind.DISPATCHED
_CLASS_NAME = vars(QueueJob)["display_name"]  # the property that gives a job's class name


def on_clock_loop(
    method: Callable[..., Coroutine[Any, Any, R]],
) -> Callable[..., Awaitable[R]]:
    """Run a public driver method on the loop its clock lives on (the simulation's, under virtual
    time), whichever loop awaits it: a notebook cell, a test, a script. On that loop already, the
    call is the method's own coroutine (no extra layer on the hot path)."""

    @functools.wraps(method)
    def wrapper(self: BaseQueueDriver, *args: Any, **kwargs: Any) -> Awaitable[R]:
        return self.clock.run_coroutine(method(self, *args, **kwargs))

    return wrapper


class _Waiter:
    """An idle worker waiting for a job of ``queues`` (None: any) until ``wake_at`` at the latest."""

    __slots__ = ("future", "queues", "wake_at")

    def __init__(self, future: asyncio.Future[None], queues: Sequence[str] | None, wake_at: float | None):
        self.future = future
        self.queues = queues
        self.wake_at = wake_at


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class BaseQueueDriver(abc.ABC):
    """Base of every driver. Subclasses implement the primitives; users call the public API."""

    #: The type name used in configs (``driver: memory``).
    driver_type: ClassVar[str] = "base"
    #: True if other processes may add jobs behind this driver's back: idle workers then also poll
    #: every ``config.poll_interval``. In-process drivers wake idle workers at the exact instant a
    #: job becomes available, so simulated waits are never inflated by polling.
    shared_between_processes: ClassVar[bool] = False
    #: True if jobs are stored as JSON (and must be registered); False keeps the live job object.
    serializes_jobs: ClassVar[bool] = False

    def __init__(
        self,
        config: DriverConfig | None = None,
        *,
        clock: Clock | None = None,
        registry: JobRegistry | None = None,
        metrics: QueueMetrics | None = None,
    ) -> None:
        from ..dlq import DeadLetterQueue

        self.config = config or DriverConfig(name=self.driver_type)
        #: The clock every primitive gets "now" from (the manager's, once registered).
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._clock_given = clock is not None
        self.registry = registry or default_registry
        self.events = EventBus()
        self.metrics: QueueMetrics | None = None
        if self.config.track_metrics or metrics is not None:
            self.metrics = metrics or QueueMetrics()
            self.events.subscribe(self.metrics, QueueMetrics.KINDS)
        self.dead_letters = DeadLetterQueue(self)
        self._waiters: deque[_Waiter] = deque()
        self._has_after_store = type(self).after_store is not BaseQueueDriver.after_store
        self._lease_watch: tuple[float, asyncio.Handle, asyncio.AbstractEventLoop] | None = None
        self._ids = itertools.count(1)
        self._lease_seconds = to_seconds(self.config.lease_time)
        #: Leases renewed by this process's workers (heartbeats), and renewals that found the
        #: lease taken over; both in ``get_stats()``.
        self.leases_renewed = 0
        self.lease_renewals_failed = 0
        #: Seconds an id given to dispatch (``job_id=``) is remembered after that dispatch.
        self.remember_job_ids = REMEMBER_JOB_IDS
        #: Plain (not async) versions of push_records, reserve_record and ack_record, for a driver
        #: whose storage never waits (memory sets them): called without a coroutine per job.
        #: None (the default) means: await the async primitive.
        self.push_now: Callable[[Sequence[JobRecord]], None] | None = None
        self.reserve_now: Callable[[Sequence[str] | None, float, str | None], JobRecord | None] | None = None
        self.ack_now: Callable[[JobRecord], bool | None] | None = None

    # ===================================================================== storage primitives
    @abc.abstractmethod
    async def push_records(self, records: Sequence[JobRecord]) -> None:
        """Primitive. Store new PENDING records (in the order given), each due at its
        ``available_at``. Assign each a ``seq`` that is larger than any assigned before, so jobs
        due at the same instant are reserved in the order they were pushed. A driver shared
        between processes may also replace ``record.id`` (from :meth:`new_job_id`, unique in this
        process only) with one its storage makes unique: ids are read after this returns."""

    @abc.abstractmethod
    async def reserve_record(
        self, queues: Sequence[str] | None, now: float, worker: str | None
    ) -> JobRecord | None:
        """Primitive. Atomically take the first available record and return it, or None if no
        record is available.

        Available: PENDING with ``available_at <= now``. Order: by ``(available_at, seq)``; with
        ``queues`` given, the first listed queue that has an available record wins (priority
        order); with None, all queues compete by ``(available_at, seq)``. The taken record becomes
        RESERVED with ``attempts + 1``, ``reserved_by = worker`` and
        ``reserved_until = now + self.lease_seconds + (timeout or 0)``. No other caller, in any
        process, may get the same record until it is released or its lease ends."""

    @abc.abstractmethod
    async def ack_record(self, record: JobRecord) -> bool | None:
        """Primitive. The reserved ``record`` is finished (completed, or discarded): remove it.

        This and the other two settles (release, bury) act only on the reservation they were
        given. If its lease ran out and the job was taken again since (another delivery holds it),
        they change nothing and return False; otherwise they return True (None counts as True).
        An ack should also mark ``record`` COMPLETED with no ``reserved_until`` (as the built-in
        drivers do), so its worker's heartbeat stops renewing it at once (before its callbacks)."""

    @abc.abstractmethod
    async def release_record(self, record: JobRecord) -> bool | None:
        """Primitive. Put the reserved ``record`` back as PENDING, due at ``record.available_at``,
        with its ``attempts``, ``last_error`` and ``error_type`` as set by the caller, and a new
        ``seq``. False if the reservation is no longer held (see :meth:`ack_record`)."""

    @abc.abstractmethod
    async def bury_record(self, record: JobRecord) -> bool | None:
        """Primitive. Move the reserved ``record`` to the dead-letter store as DEAD, keeping
        ``last_error``, ``error_type``, ``failed_at`` and ``attempts`` as set by the caller.
        False if the reservation is no longer held (see :meth:`ack_record`)."""

    @abc.abstractmethod
    async def reclaim_expired(self, now: float) -> list[JobRecord]:
        """Primitive. Find RESERVED records whose ``reserved_until <= now`` (their worker is gone).
        Each one with attempts left (``attempts < max_attempts``) becomes PENDING, available at
        ``now``; each one without becomes DEAD with ``last_error`` saying the lease expired and
        ``failed_at = now``. Return them all (their ``status`` tells which), in the order their
        leases ended, by ``(reserved_until, seq)``, which is also the order they are given new
        seqs in; [] if none. The worker that held one may still be running it: its settle must
        then change nothing (an in-process driver returns fresh record objects here, not the ones
        that worker holds)."""

    @abc.abstractmethod
    async def counts(self, now: float) -> QueueCounts:
        """Primitive. How many records are ready (PENDING, due), delayed (PENDING, not yet due)
        and reserved, over all queues, at ``now``."""

    @abc.abstractmethod
    async def next_available_at(self, queues: Sequence[str] | None) -> float | None:
        """Primitive. The earliest ``available_at`` of a PENDING record in ``queues`` (None: all);
        None if there is no pending record."""

    @abc.abstractmethod
    async def clear_records(self) -> int:
        """Primitive. Remove every PENDING and RESERVED record (not the dead letters); return how
        many were removed."""

    @abc.abstractmethod
    async def dead_records(self, limit: int | None = None) -> list[JobRecord]:
        """Primitive. Dead-lettered records, oldest first, at most ``limit``; [] if none."""

    @abc.abstractmethod
    async def get_dead_record(self, job_id: str) -> JobRecord | None:
        """Primitive. One dead-lettered record, or None if there is none with that id."""

    @abc.abstractmethod
    async def requeue_dead_records(self, job_ids: Sequence[str] | None, now: float) -> list[JobRecord]:
        """Primitive. Move dead-lettered records (all if ``job_ids`` is None) back to PENDING,
        available at ``now``, with ``attempts`` reset to 0 and a new ``seq``. Return the moved
        records; ids that are not dead-lettered are skipped, an id given twice counts once."""

    @abc.abstractmethod
    async def purge_dead_records(self, job_ids: Sequence[str] | None) -> list[JobRecord]:
        """Primitive. Delete dead-lettered records (all if ``job_ids`` is None; an id given twice
        counts once); return them."""

    async def push_new_records(
        self, records: Sequence[JobRecord], fingerprints: Sequence[str], now: float, remember_until: float
    ) -> list[str | None]:
        """Primitive for dispatch with ids chosen by the client (``job_id=``); the default refuses.

        Each record has its client's id in ``record.id`` (never digits only). In one atomic step,
        for each record in order: if a job with that id is stored (pending, reserved or dead), or
        the id is remembered from an earlier such push, store nothing for it and return the
        fingerprint remembered with the id ("" if the driver no longer knows it); otherwise store
        it as :meth:`push_records` would, but keeping its id, remember the id with its
        ``fingerprint`` until ``remember_until``, and return None. A remembered id may be
        forgotten once ``now`` is past its time and no job with it is stored. On a store shared
        between processes, what is remembered is shared too, and survives a restart."""
        raise KhademLabError(
            f"driver {self.name!r} ({type(self).__name__}) does not support dispatch with job_id=: "
            "it has no push_new_records; dispatch without job_id, or use another driver"
        )

    # -- optional primitives for inspection (``khadem-lab jobs``); defaults say the driver cannot
    async def list_records(self, state: str, now: float, limit: int | None = None) -> list[JobRecord]:
        """Optional primitive. The waiting or running records in ``state`` (one of
        :data:`LIST_STATES`): ``"ready"`` (PENDING, ``available_at <= now``) and ``"delayed"``
        (PENDING, due later) in the order workers take them, by ``(available_at, seq)``;
        ``"reserved"`` by ``(reserved_until, seq)``, with ``reserved_by`` and ``reserved_until``.
        At most ``limit``; [] if none. A snapshot for people to read: it need not be atomic
        across queues. Default: raises :class:`KhademLabError` (the driver cannot list)."""
        raise self._unsupported("list_records")

    async def get_record(self, job_id: str) -> JobRecord | None:
        """Optional primitive. The record ``job_id`` in whatever state it is (PENDING, RESERVED
        or DEAD), or None if the driver holds no such job (never stored, or finished and gone).
        Default: raises :class:`KhademLabError`."""
        raise self._unsupported("get_record")

    async def cancel_record(self, job_id: str) -> JobRecord | None:
        """Optional primitive. Remove the PENDING (ready or delayed) record ``job_id`` so that no
        worker runs it, and return it; None if there is no pending record with that id (a RESERVED
        one is left alone: a worker holds it). Default: raises :class:`KhademLabError`."""
        raise self._unsupported("cancel_record")

    def _unsupported(self, primitive: str) -> KhademLabError:
        return KhademLabError(
            f"driver {self.name!r} ({type(self).__name__}) does not implement {primitive}, so it cannot "
            "list, show or cancel single jobs; implement it (see BaseQueueDriver) or use another driver"
        )

    async def next_lease_expiry(self) -> float | None:
        """Optional primitive. The earliest ``reserved_until`` of a RESERVED record; None if none
        is reserved (or the driver cannot tell cheaply). An idle worker wakes then to bring the job
        of a vanished worker back; drivers shared between processes also find it at their polls.
        Needed in practice by a driver that is not ``shared_between_processes``: without it, an
        idle worker that starts waiting after a job was reserved never wakes at that lease's end
        (the contract suite's lease checks fail)."""
        return None

    async def reserve_records(
        self, queues: Sequence[str] | None, now: float, worker: str | None, limit: int
    ) -> list[JobRecord]:
        """Optional primitive. Up to ``limit`` reservations at once (for a worker that prefetches),
        exactly as that many :meth:`reserve_record` calls would make them, in order; fewer if
        fewer are available. Default: calls :meth:`reserve_record`. A remote store overrides it
        to make them in one round trip."""
        taken: list[JobRecord] = []
        while len(taken) < limit:
            record = await self.reserve_record(queues, now, worker)
            if record is None:
                break
            taken.append(record)
        return taken

    async def take_records(
        self,
        acks: Sequence[JobRecord],
        queues: Sequence[str] | None,
        now: float,
        worker: str | None,
        limit: int,
    ) -> tuple[list[bool | None], list[JobRecord], list[JobRecord]]:
        """Optional primitive. What a worker's slot does between jobs, in this order: ack ``acks``
        (finished jobs whose ack was deferred), bring back the jobs whose lease ended by ``now``,
        reserve up to ``limit`` jobs. Returns the ack results, the reclaimed records and the
        reserved ones. The one-taker case of :meth:`take_records_for`, which a remote store
        overrides to make the three one round trip."""
        return await self.take_records_for(acks, queues, now, [(worker, limit)])

    async def take_records_for(
        self,
        acks: Sequence[JobRecord],
        queues: Sequence[str] | None,
        now: float,
        workers: Sequence[tuple[str | None, int]],
    ) -> tuple[list[bool | None], list[JobRecord], list[JobRecord]]:
        """Optional primitive. :meth:`take_records` for several takers at once (the slots of one
        worker that want a job at the same moment): ``workers`` is (worker name, how many jobs)
        per taker, served in that order; the reserved records come back in that order, each
        reserved by its taker, and stop at the first reserve that finds nothing. Default:
        :meth:`ack_records`, :meth:`reclaim_expired` (when :meth:`lease_may_have_ended`), one
        :meth:`reserve_records` per taker. A remote store overrides it to make it one round trip."""
        acked = await self.ack_records(acks) if acks else []
        reclaimed = await self.reclaim_expired(now) if self.lease_may_have_ended(now) else []
        taken: list[JobRecord] = []
        for worker, count in workers:
            got = await self.reserve_records(queues, now, worker, count)
            taken += got
            if len(got) < count:
                break
        return acked, reclaimed, taken

    async def ack_records(self, records: Sequence[JobRecord]) -> list[bool | None]:
        """Optional primitive. :meth:`ack_record` for several finished reservations at once, one
        result each. Default: one by one; a remote store overrides it to use one round trip."""
        return [await self.ack_record(record) for record in records]

    async def renew_records(self, records: Sequence[JobRecord], now: float) -> list[bool | None]:
        """Primitive (the default raises). Extend the leases of reservations a live worker still
        holds (its heartbeat, every sixth of ``lease_time`` for those with two thirds or less left),
        all in one storage operation (one round trip, one transaction) where the store allows.

        For each record, in order: if this very reservation still holds its job (the test the
        settles make, see :meth:`ack_record`), its lease ends at ``max(its current end, now +
        self.lease_seconds)``, in storage and in ``record.reserved_until``, and the result is True
        (None counts as True). A lease that has run out but whose job nobody reclaimed yet is
        still held, and renewed. Otherwise (the lease ended and the job was reclaimed, taken by
        another worker, or the queue was cleared) nothing changes and the result is False. A
        renewed lease is not reclaimed before its new end: :meth:`reclaim_expired`,
        :meth:`next_lease_expiry` and :meth:`lease_may_have_ended` go by the new end.

        A driver that does not implement it keeps working, but a job that runs longer than
        ``lease_time`` is delivered again while its worker is alive (the worker logs a warning once
        and stops renewing); the contract's lease-renewal checks fail for it."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement renew_records(records, now): workers cannot "
            "renew their leases, so a job that runs longer than lease_time is delivered again while "
            "its worker lives. Implement it: for each record still reserved under this very "
            "reservation, set reserved_until = max(reserved_until, now + self.lease_seconds) in "
            "storage and on the record and return True; False for one that is no longer held"
        )

    def lease_may_have_ended(self, now: float) -> bool:
        """Optional primitive, not awaited: False only if the driver knows for sure that no lease
        ended by ``now``, so :meth:`reserve` can skip :meth:`reclaim_expired`. Default: True."""
        return True

    async def storage_info(self) -> dict[str, Any]:
        """Optional primitive. Extra driver-specific keys for ``get_stats()``."""
        return {}

    async def close(self) -> None:
        """Optional primitive. Release connections and files. Called by :meth:`dispose`."""
        return None

    def new_job_id(self) -> str:
        """A new job id. In-process drivers count; shared drivers must make ids unique across
        processes."""
        return str(next(self._ids))

    # ===================================================================== clock and identity
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def lease_seconds(self) -> float:
        return self._lease_seconds

    def bind_clock(self, clock: Clock) -> None:
        """Give the driver the manager's clock (a driver built without one takes it)."""
        if not self._clock_given:
            self.clock = clock
            self._clock_given = True
        elif self.clock is not clock:
            raise KhademLabError(
                f"driver {self.name!r} already runs on {self.clock!r}, not on the manager's "
                f"{clock!r}; build the driver without a clock or with the same one"
            )

    # ===================================================================== the spec's API
    @on_clock_loop
    async def push(
        self,
        job: QueueJob,
        delay: timedelta | float | None = None,
        *,
        at: datetime | None = None,
        queue: str | None = None,
        job_id: str | None = None,
    ) -> str:
        """Add ``job`` to the queue, due now, after ``delay``, or at the absolute time ``at``.
        Returns the job id. ``job_id``: the id, chosen by the caller; then a job already stored
        (or remembered) under that id is not stored again (see :mod:`~khadem_lab.drivers.jobids`)."""
        now = self.clock.time()
        due = now if delay is None and at is None else self._due(delay, at, now)
        if job_id is not None:
            return (await self._push_with_ids([job], [check_job_id(job_id, job)], due, queue, now))[0]
        records = [self.make_record(job, due, queue, now)]
        if self.push_now is not None:  # stored at once, at `now`: _announce, inlined
            self.push_now(records)
            record = records[0]
            self.emit(_DISPATCHED, record, available_at=record.available_at, time=now)
            if self._waiters or self.shared_between_processes:
                self.notify(record.queue, record.available_at)
            attempts = getattr(self.clock, "attempts", None)  # progress, for a simulation's watchdog
            if attempts is not None:
                attempts.stored += 1
        else:
            await self.push_records(records)
            self._announce(records)
        if self._has_after_store:
            await self.after_store(records)
        return records[0].id

    @on_clock_loop
    async def push_many(
        self,
        jobs: Iterable[QueueJob],
        delay: timedelta | float | None = None,
        *,
        at: datetime | None = None,
        queue: str | None = None,
        job_ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Add several jobs in one storage operation, in order. Returns their ids. ``job_ids``:
        one id per job, chosen by the caller (see :meth:`push`'s ``job_id``)."""
        now = self.clock.time()  # one dispatch: every record created at this instant
        due = self._due(delay, at, now)
        if job_ids is not None:
            batch = list(jobs)
            return await self._push_with_ids(batch, check_job_ids(job_ids, batch), due, queue, now)
        records = [self.make_record(job, due, queue, now) for job in jobs]
        if records:
            if self.push_now is not None:
                self.push_now(records)
            else:
                await self.push_records(records)
            self._announce(records)
            if self._has_after_store:
                await self.after_store(records)
        return [r.id for r in records]

    async def _push_with_ids(
        self, jobs: Sequence[QueueJob], ids: list[str], due: float, queue: str | None, now: float
    ) -> list[str]:
        """Store the jobs whose ids are neither stored nor remembered; the others are skipped
        (or, if a different job holds the id, JobIdConflict after the rest is stored)."""
        records = [self.make_record(job, due, queue, now) for job in jobs]
        prints = []
        for job_id, job, record in zip(ids, jobs, records, strict=True):
            record.id = job_id
            prints.append(fingerprint(job, record.type, record.payload_json))
        found = await self.push_new_records(records, prints, now, now + to_seconds(self.remember_job_ids))
        stored = [record for record, known in zip(records, found, strict=True) if known is None]
        if stored:
            self._announce(stored)
            if self._has_after_store:
                await self.after_store(stored)
        for record, known, mine in zip(records, found, prints, strict=True):
            if known and known != mine:
                raise JobIdConflict(record.id, record.type)
        return ids

    @on_clock_loop
    async def process(self, queues: Sequence[str] | None = None) -> bool:
        """Run at most one available job, through retries and dead-lettering. True if one ran.
        Its lease is not renewed (a worker's heartbeat does that): a job that runs longer than
        ``lease_time`` here may be delivered again to a worker meanwhile."""
        from ..execution import execute

        record = await self.reserve(queues, worker=None)
        if record is None:
            return False
        await execute(self, record, worker=None)
        return True

    @on_clock_loop
    async def size(self) -> int:
        """Jobs waiting or running (not dead-lettered)."""
        return (await self.counts(self.clock.time())).depth

    @on_clock_loop
    async def clear(self) -> int:
        """Remove every waiting and running job (the dead-letter queue is kept; purge it there)."""
        return await self.clear_records()

    @on_clock_loop
    async def get_stats(self) -> dict[str, Any]:
        """The spec's statistics: depth and counts, plus ``metrics`` and ``dlq`` when enabled."""
        now = self.clock.time()
        counts = await self.counts(now)
        stats: dict[str, Any] = {
            "driver_name": self.name,
            "driver_type": self.driver_type,
            "queue_depth": counts.depth,
            "processing_count": counts.reserved,
            "pending_count": counts.pending,
            "ready_jobs": counts.ready,
            "delayed_jobs": counts.delayed,
            "leases_renewed": self.leases_renewed,
            "lease_renewals_failed": self.lease_renewals_failed,
        }
        stats.update(await self.storage_info())
        if self.metrics is not None:
            stats["metrics"] = self.metrics.snapshot()
        if self.config.use_dlq:
            stats["dlq"] = await self.dead_letters.stats_unlocked()
        return stats

    @on_clock_loop
    async def dispose(self) -> None:
        """Wake idle workers and release the driver's resources."""
        for waiter in list(self._waiters):
            _wake(waiter.future)
        await self.close()

    def subscribe(
        self, subscriber: Callable[[QueueEvent], object], kinds: Iterable[EventKind] | None = None
    ) -> Callable[[], None]:
        """Receive every lifecycle event of this driver (of ``kinds`` only, if given); returns an
        unsubscribe function."""
        return self.events.subscribe(subscriber, kinds)

    # ===================================================================== used by workers
    def make_record(
        self, job: QueueJob, available_at: float, queue: str | None = None, created_at: float | None = None
    ) -> JobRecord:
        """Build the stored record of ``job`` (checks registration for serializing drivers);
        ``created_at`` defaults to the clock's time."""
        if not isinstance(job, QueueJob):
            raise TypeError(f"only QueueJob instances can be dispatched, got {job!r}")
        type_name = self.registry.name_of(job)
        payload = payload_json = None
        live_job: QueueJob | None = job
        if self.serializes_jobs:
            if not self.registry.is_registered(job):
                raise UnregisteredJobError(type_name, self.registry.names)
            payload, payload_json = encode_payload_json(job)
            live_job = None
        max_retries = job.max_retries if option_overridden(job, "max_retries") else self.config.max_retries
        if type(max_retries) is not int or max_retries < 0:
            raise KhademLabError(f"{type_name}.max_retries must be an integer >= 0, got {max_retries!r}")
        timeout = job.timeout
        if timeout is None:
            timeout = self.config.default_job_timeout
        timeout_s = None if timeout is None else to_seconds(timeout)
        if timeout_s is not None and timeout_s <= 0:
            raise KhademLabError(f"{type_name}.timeout must be positive, got {timeout!r}")
        queue_name = job.queue if queue is None else queue
        if type(queue_name) is not str or not queue_name:  # "" would go nowhere a worker looks
            raise KhademLabError(
                f"dispatch of {type_name}: the queue must be a non-empty string, got {queue_name!r} "
                "(leave queue= out for the job's own queue)"
            )
        record = JobRecord(  # positional: measurably cheaper than keywords, once per dispatch
            self.new_job_id(),
            type_name,
            queue_name,
            payload,
            # QueueJob's own display_name is the class name: read without calling the property.
            cls.__name__ if (cls := type(job)).display_name is _CLASS_NAME else job.display_name,
            max_retries,
            timeout_s,
            available_at,
            self.clock.time() if created_at is None else created_at,
        )
        record.job = live_job
        record.payload_json = payload_json
        return record

    async def reserve(self, queues: Sequence[str] | None, *, worker: str | None) -> JobRecord | None:
        """Take the next available job: first bring back jobs whose lease ran out."""
        if self.shared_between_processes:
            taken = await self.reserve_many(queues, worker=worker, limit=1)
            return taken[0] if taken else None
        now = self.clock.time()
        if self.lease_may_have_ended(now):
            self._announce_reclaimed(await self.reclaim_expired(now), now)
        if self.reserve_now is not None:
            record = self.reserve_now(queues, now, worker)
        else:
            record = await self.reserve_record(queues, now, worker)
        if record is not None:
            self._on_reserved(record, worker, now)
        return record

    def reserve_at_once(
        self, queues: Sequence[str] | None, *, worker: str | None
    ) -> JobRecord | Literal[False] | None:
        """:meth:`reserve` without a coroutine (a worker's hot path), where it never waits: the
        driver has :attr:`reserve_now` and no lease has ended (bringing jobs back is async). The
        record or None as :meth:`reserve` returns them, or False: then await :meth:`reserve`."""
        reserve_now = self.reserve_now
        if reserve_now is None:
            return False
        now = self.clock.time()
        if self.lease_may_have_ended(now):
            return False
        record = reserve_now(queues, now, worker)
        if record is not None and (self._waiters or self.events.by_kind[_RESERVED]):
            self._on_reserved(record, worker, now)
        return record

    async def reserve_many(
        self,
        queues: Sequence[str] | None,
        *,
        worker: str | None,
        limit: int,
        acks: Sequence[JobRecord] = (),
    ) -> list[JobRecord]:
        """Take up to ``limit`` available jobs (a prefetching worker): leases first, as reserve.
        ``acks``: finished jobs whose ack was deferred, acked first (a lost reservation is
        reported as LEASE_LOST, as :meth:`settle_acks` does); all in one round trip where the
        driver can (:meth:`take_records`)."""
        if limit == 1 and not acks and not self.shared_between_processes:
            record = await self.reserve(queues, worker=worker)
            return [] if record is None else [record]
        now = self.clock.time()
        acked, reclaimed, taken = await self.take_records(acks, queues, now, worker, limit)
        self._report_lost(acks, acked, worker)
        self._announce_reclaimed(reclaimed, now)
        if self._waiters:
            for record in taken:
                self._watch_leases_of(record)
        if self.events.by_kind[EventKind.RESERVED]:
            for record in taken:
                self.emit(EventKind.RESERVED, record, worker=worker, time=now)
        return taken

    async def reserve_each(
        self, queues: Sequence[str] | None, takers: Sequence[tuple[str | None, Sequence[JobRecord]]]
    ) -> list[JobRecord | None]:
        """:meth:`reserve_many` for several takers at once, at most one job each: ``takers`` is
        (worker name, its deferred acks) per slot that wants a job now. Every ack is sent, then
        one job is reserved for each taker, in order (None for those left without one); all in
        one round trip where the driver can (:meth:`take_records_for`). No job is reserved
        beyond one per taker."""
        now = self.clock.time()
        acks = [record for _, deferred in takers for record in deferred]
        acked, reclaimed, taken = await self.take_records_for(acks, queues, now, [(w, 1) for w, _ in takers])
        start = 0
        for worker, deferred in takers:
            self._report_lost(deferred, acked[start : start + len(deferred)], worker)
            start += len(deferred)
        self._announce_reclaimed(reclaimed, now)
        if self._waiters:
            for record in taken:
                self._watch_leases_of(record)
        if self.events.by_kind[EventKind.RESERVED]:
            for (worker, _), record in zip(takers, taken, strict=False):
                self.emit(EventKind.RESERVED, record, worker=worker, time=now)
        return [*taken, *[None] * (len(takers) - len(taken))]

    def _announce_reclaimed(self, records: list[JobRecord], now: float) -> None:
        for expired in records:
            self.emit(EventKind.LEASE_EXPIRED, expired, available_at=now, error=expired.last_error, time=now)
            if expired.status is JobStatus.DEAD:
                self.emit(EventKind.DEAD_LETTERED, expired, error=expired.last_error, time=now)
            else:
                self.notify(expired.queue, now)

    async def settle_acks(self, records: list[JobRecord], *, worker: str | None) -> None:
        """Ack finished jobs whose ack a prefetching worker deferred; a lost reservation is
        reported as LEASE_LOST, as :func:`~khadem_lab.execution.execute` would."""
        if not records:
            return
        self._report_lost(records, await self.ack_records(records), worker)

    def _report_lost(
        self, records: Sequence[JobRecord], acked: Sequence[bool | None], worker: str | None
    ) -> None:
        for record, done in zip(records, acked, strict=True):
            if done is False:
                self.emit(EventKind.LEASE_LOST, record, worker=worker)

    async def renew_leases(self, records: Sequence[JobRecord], *, worker: str | None) -> list[bool]:
        """A worker's heartbeat: renew the leases of ``records`` (:meth:`renew_records`), count and
        announce each (LEASE_RENEWED with the new end as ``available_at``, or RENEWAL_FAILED).
        True for each lease still held."""
        now = self.clock.time()
        results = await self.renew_records(records, now)
        held: list[bool] = []
        for record, result in zip(records, results, strict=True):
            if result is False:
                self.lease_renewals_failed += 1
                self.emit(EventKind.RENEWAL_FAILED, record, worker=worker, time=now)
            else:
                self.leases_renewed += 1
                self.emit(
                    EventKind.LEASE_RENEWED,
                    record,
                    worker=worker,
                    available_at=record.reserved_until,
                    time=now,
                )
            held.append(result is not False)
        return held

    async def wait_for_job(
        self,
        queues: Sequence[str] | None,
        deadline: float | None = None,
        wakeup: asyncio.Future[None] | None = None,
    ) -> None:
        """Wait until a job of ``queues`` may be available, ``deadline`` passes, or ``wakeup`` is
        set (a worker being stopped). Returns early rather than late; the caller reserves again."""
        clock = self.clock
        now = clock.time()
        wake_at = await self.next_available_at(queues)
        lease_end = await self.next_lease_expiry()
        if lease_end is not None:
            if lease_end <= now:
                return  # a lease has run out: the next reserve brings its job back
            self._watch_leases(lease_end)
        # A poll that looks only for work another process might add (nothing is known to be due
        # and no lease is held) is an idle timer: a simulation with only those left is idle.
        speculative = False
        if self.shared_between_processes:
            poll_at = now + to_seconds(self.config.poll_interval)
            speculative = wake_at is None and lease_end is None and deadline is None
            wake_at = poll_at if wake_at is None else min(wake_at, poll_at)
        if deadline is not None:
            wake_at = deadline if wake_at is None else min(wake_at, deadline)
        if wake_at is not None and wake_at <= now:
            return
        future = wakeup if wakeup is not None else asyncio.get_running_loop().create_future()
        if future.done():
            return
        waiter = _Waiter(future, queues, wake_at)
        self._waiters.append(waiter)
        call_at = getattr(clock, "call_idle_at", clock.call_at) if speculative else clock.call_at
        timer = call_at(wake_at, _wake, future) if wake_at is not None else None
        try:
            await future
        finally:
            if timer is not None:
                timer.cancel()
            try:  # noqa: SIM105  (suppress() costs three calls; this runs after every idle wait)
                self._waiters.remove(waiter)
            except ValueError:
                pass

    def _on_reserved(self, record: JobRecord, worker: str | None, now: float) -> None:
        """After a reserve took ``record``: watch its lease for idle workers, announce it."""
        if self._waiters:  # idle workers sleep past this lease's end unless told
            self._watch_leases_of(record)
        if self.events.by_kind[EventKind.RESERVED]:
            self.emit(EventKind.RESERVED, record, worker=worker, time=now)

    def _watch_leases_of(self, record: JobRecord) -> None:
        """A job was just reserved while other workers are idle: they wait for new jobs and would
        sleep past its lease's end (its worker may vanish), so watch that end for them."""
        if record.reserved_until is not None:
            self._watch_leases(record.reserved_until)

    def _watch_leases(self, lease_end: float) -> None:
        """Wake an idle worker when the earliest lease ends (its worker may have vanished).

        One timer per driver, not one per idle wait: it is moved only when a lease ends sooner
        than the one it watches; a stale wake-up just makes a worker look and wait again."""
        loop = asyncio.get_running_loop()
        watch = self._lease_watch
        if watch is not None and watch[2] is loop and not watch[1].cancelled() and watch[0] <= lease_end:
            return
        if watch is not None:
            watch[1].cancel()
        self._lease_watch = (lease_end, self.clock.call_at(lease_end, self._lease_watch_fired), loop)

    def stop_lease_watch(self) -> None:
        """For drivers: call when no job is reserved any more, so no lease needs watching (an idle
        simulation then really is idle)."""
        if self._lease_watch is not None:
            self._lease_watch[1].cancel()
            self._lease_watch = None

    def _lease_watch_fired(self) -> None:
        self._lease_watch = None
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_result(None)
                return

    def notify(self, queue: str, available_at: float) -> None:
        """A job of ``queue`` is due at ``available_at``: wake the first idle worker that would
        otherwise sleep past it. (On a shared store, workers of other drivers find it at their
        next poll: under a simulation, their polls are then work again, not idle timers.)"""
        if self.shared_between_processes:
            end_idle = getattr(self.clock, "end_idle", None)
            if end_idle is not None:
                end_idle()
        for waiter in self._waiters:
            if waiter.future.done():
                continue
            if waiter.queues is not None and queue not in waiter.queues:
                continue
            if waiter.wake_at is None or available_at < waiter.wake_at:
                waiter.future.set_result(None)
                return
            return  # the first eligible waiter will be up by then anyway

    def emit(
        self,
        kind: EventKind,
        record: JobRecord,
        *,
        worker: str | None = None,
        error: str | None = None,
        available_at: float | None = None,
        duration: float | None = None,
        time: float | None = None,
    ) -> None:
        """Publish one lifecycle event of ``record``: built only if someone receives that kind,
        and only if one of them needs it (counters such as the driver's metrics are tallied
        without it: :attr:`EventBus.plans <khadem_lab.events.EventBus.plans>`)."""
        events = self.events
        needs_event, plan = events.plans[kind]
        if not plan:
            return
        clock = self.clock
        seq = clock.next_seq()  # taken even if no event is built: the events built keep their seqs
        event: QueueEvent | None = None
        if needs_event:
            event = _new_event(  # self._event, inlined on the hot path
                QueueEvent,
                (
                    clock.time() if time is None else time,
                    seq,
                    kind,
                    record.id,
                    record.type,
                    record.queue,
                    record.attempts,
                    self.config.name,
                    worker,
                    error,
                    available_at,
                    duration,
                ),
            )
        for subscriber, tally in plan:  # `deliver`, inlined on the hot path
            try:
                if tally is None:
                    subscriber(event)  # type: ignore[arg-type]
                else:
                    tally(kind, record.type, duration)
            except Exception as failure:
                if event is None:
                    event = self._event(kind, record, seq, worker, error, available_at, duration, time)
                events.subscriber_failed(subscriber, event, failure)

    def _event(
        self,
        kind: EventKind,
        record: JobRecord,
        seq: int,
        worker: str | None,
        error: str | None,
        available_at: float | None,
        duration: float | None,
        time: float | None,
    ) -> QueueEvent:
        event: QueueEvent = _new_event(
            QueueEvent,
            (
                self.clock.time() if time is None else time,
                seq,
                kind,
                record.id,
                record.type,
                record.queue,
                record.attempts,
                self.config.name,
                worker,
                error,
                available_at,
                duration,
            ),
        )
        return event

    def _announce(self, records: list[JobRecord]) -> None:
        """After ``push_records``: a DISPATCHED event per record, and wake an idle worker.
        (Then, for drivers that have one, ``after_store``.)"""
        now = self.clock.time()
        for record in records:
            self.emit(EventKind.DISPATCHED, record, available_at=record.available_at, time=now)
            self.notify(record.queue, record.available_at)
        attempts = getattr(self.clock, "attempts", None)  # progress, for a simulation's watchdog
        if attempts is not None:
            attempts.stored += len(records)

    async def after_store(self, records: list[JobRecord]) -> None:
        """Hook: runs after records were stored and announced (dispatch or requeue). No-op here."""
        return None

    def _due(self, delay: timedelta | float | None, at: datetime | None, now: float) -> float:
        if at is not None:
            if delay is not None:
                raise ValueError("give either delay or at, not both")
            return max(now, to_timestamp(at))
        seconds = to_seconds(delay)
        if seconds < 0:
            raise ValueError(f"delay must not be negative, got {delay!r}")
        return now + seconds

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
