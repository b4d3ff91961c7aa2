"""InMemoryDriver: jobs in a heap per queue, in this process only. The reference driver.

Push, reserve, ack and retry are O(log n), delayed jobs included: every pending job sits in its
queue's heap ordered by ``(available_at, seq)``, so the head is always the next one due.
"""

from __future__ import annotations

import copy
import heapq
import itertools
from collections.abc import Sequence

from ..records import JobRecord, JobStatus, QueueCounts
from .base import BaseQueueDriver

_Entry = tuple[float, int, JobRecord]


class InMemoryDriver(BaseQueueDriver):
    """Fast, not persistent: jobs are lost when the process ends."""

    driver_type = "memory"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._heaps: dict[str, list[_Entry]] = {}
        self._reserved: dict[str, JobRecord] = {}
        self._leases: list[tuple[float, int, str]] = []
        self._dead: dict[str, JobRecord] = {}
        self._seq = itertools.count(1)
        #: Ids given to dispatch (job_id=): their job's fingerprint and how long they are remembered.
        self._client_ids: dict[str, tuple[str, float]] = {}
        self._client_ids_kept = 0  # how many were left after the last look for forgotten ones
        # The plain primitives (see BaseQueueDriver.push_now), unless a subclass overrides the
        # async one (a recording driver, the sync driver): then the base awaits that one.
        cls = type(self)
        if cls.push_records is InMemoryDriver.push_records:
            self.push_now = self._push_now
        if cls.reserve_record is InMemoryDriver.reserve_record:
            self.reserve_now = self._reserve_now
        if cls.ack_record is InMemoryDriver.ack_record:
            self.ack_now = self._ack_now

    # -- the spec's extras -------------------------------------------------------------------
    @property
    def pending_jobs_count(self) -> int:
        """Jobs waiting (ready or delayed)."""
        return sum(len(h) for h in self._heaps.values())

    @property
    def is_empty(self) -> bool:
        """True when no job is waiting or running."""
        return not self._reserved and not any(self._heaps.values())

    # -- primitives -----------------------------------------------------------------------------
    # Storage here never waits: each hot primitive is a plain method that the async one wraps, and
    # that the base class calls directly (BaseQueueDriver.push_now): no coroutine per job. With the
    # worker's one-by-one slot: bench/mmc.py 2.38 -> 2.26 s loop-thread CPU (bench/README.md, M/M/c).
    async def push_records(self, records: Sequence[JobRecord]) -> None:
        self._push_now(records)

    def _push_now(self, records: Sequence[JobRecord]) -> None:
        heaps = self._heaps
        for record in records:
            record.seq = next(self._seq)
            heap = heaps.get(record.queue)
            if heap is None:
                heap = heaps[record.queue] = []
            heapq.heappush(heap, (record.available_at, record.seq, record))

    async def push_new_records(
        self, records: Sequence[JobRecord], fingerprints: Sequence[str], now: float, remember_until: float
    ) -> list[str | None]:
        known = self._client_ids
        if len(known) > 2 * self._client_ids_kept + 64:
            self._forget_client_ids(now)
        found: list[str | None] = []
        new: list[JobRecord] = []
        for record, mark in zip(records, fingerprints, strict=True):
            entry = known.get(record.id)
            if entry is not None and (entry[1] > now or self._stores(record.id)):
                found.append(entry[0])
                continue
            known[record.id] = (mark, remember_until)
            found.append(None)
            new.append(record)
        if new:
            await self.push_records(new)
        return found

    def _forget_client_ids(self, now: float) -> None:
        """Drop the remembered ids whose time is up and whose job is gone (amortized O(1))."""
        stored = self._stored_ids()
        self._client_ids = {i: e for i, e in self._client_ids.items() if e[1] > now or i in stored}
        self._client_ids_kept = len(self._client_ids)

    def _stored_ids(self) -> set[str]:
        ids = {entry[2].id for heap in self._heaps.values() for entry in heap}
        return ids | self._reserved.keys() | self._dead.keys()

    def _stores(self, job_id: str) -> bool:
        """A job with this id is pending, reserved or dead (O(n) for a pending one: only asked
        about an id whose remembered time is up)."""
        return job_id in self._stored_ids()

    async def reserve_record(
        self, queues: Sequence[str] | None, now: float, worker: str | None
    ) -> JobRecord | None:
        return self._reserve_now(queues, now, worker)

    def _reserve_now(self, queues: Sequence[str] | None, now: float, worker: str | None) -> JobRecord | None:
        chosen: list[_Entry] | None = None
        if queues is None:
            best: _Entry | None = None
            for heap in self._heaps.values():
                if heap and heap[0][0] <= now and (best is None or heap[0][:2] < best[:2]):
                    best, chosen = heap[0], heap
        else:
            for name in queues:
                candidate = self._heaps.get(name)
                if candidate and candidate[0][0] <= now:
                    chosen = candidate
                    break
        if chosen is None:
            return None
        record = heapq.heappop(chosen)[2]
        # _mark_reserved, inlined on the hot path
        record.status = JobStatus.RESERVED
        record.attempts += 1
        record.reserved_by = worker
        until = now + self._lease_seconds + (record.timeout or 0.0)
        record.reserved_until = until
        self._reserved[record.id] = record
        leases = self._leases
        heapq.heappush(leases, (until, record.seq, record.id))
        if len(leases) > 64 + 2 * len(self._reserved):  # drop entries of finished jobs
            self._leases = [(r.reserved_until, r.seq, r.id) for r in self._reserved.values()]  # type: ignore[misc]
            heapq.heapify(self._leases)
        return record

    def _mark_reserved(self, record: JobRecord, now: float, worker: str | None) -> float:
        """Make ``record`` RESERVED by ``worker`` under a lease from ``now``; return the lease end."""
        record.status = JobStatus.RESERVED
        record.attempts += 1
        record.reserved_by = worker
        until = now + self._lease_seconds + (record.timeout or 0.0)
        record.reserved_until = until
        self._reserved[record.id] = record
        return until

    def _unreserve(self, record: JobRecord) -> bool:
        """End ``record``'s reservation if this very delivery still holds it."""
        if self._reserved.get(record.id) is not record:
            return False  # its lease ran out and the job was taken again, or the queue was cleared
        del self._reserved[record.id]
        if not self._reserved:
            self.stop_lease_watch()
        return True

    async def ack_record(self, record: JobRecord) -> bool:
        return self._ack_now(record)

    def _ack_now(self, record: JobRecord) -> bool:
        reserved = self._reserved  # _unreserve, inlined on the hot path
        if reserved.get(record.id) is not record:
            return False
        del reserved[record.id]
        if not reserved:
            self.stop_lease_watch()
        record.status = JobStatus.COMPLETED
        record.reserved_until = None
        return True

    async def release_record(self, record: JobRecord) -> bool:
        if not self._unreserve(record):
            return False
        record.status = JobStatus.PENDING
        record.reserved_until = None
        record.reserved_by = None
        await self.push_records([record])
        return True

    async def bury_record(self, record: JobRecord) -> bool:
        if not self._unreserve(record):
            return False
        record.status = JobStatus.DEAD
        record.reserved_until = None
        self._dead[record.id] = record
        return True

    async def renew_records(self, records: Sequence[JobRecord], now: float) -> list[bool | None]:
        renewed: list[bool | None] = []
        leases = self._leases
        for record in records:
            if self._reserved.get(record.id) is not record or record.reserved_until is None:
                renewed.append(False)  # reclaimed (a fresh object holds it now), settled or cleared
                continue
            until = now + self._lease_seconds
            if until > record.reserved_until:
                record.reserved_until = until  # the old heap entry is skipped by reclaim_expired
                heapq.heappush(leases, (until, record.seq, record.id))
            renewed.append(True)
        return renewed

    def lease_may_have_ended(self, now: float) -> bool:
        leases = self._leases
        return bool(leases) and leases[0][0] <= now

    async def reclaim_expired(self, now: float) -> list[JobRecord]:
        leases = self._leases
        if not leases or leases[0][0] > now:
            return []
        reclaimed: list[JobRecord] = []
        while leases and leases[0][0] <= now:
            until, seq, job_id = heapq.heappop(leases)
            record = self._reserved.get(job_id)
            if record is None or record.reserved_until != until or record.seq != seq:
                continue  # finished, or given back and reserved again since (a new seq)
            del self._reserved[job_id]
            record = _redelivery(record)  # the vanished worker keeps the old object: its settles do nothing
            record.end_lease(now, dead=record.attempts >= record.max_attempts)
            if record.status is JobStatus.DEAD:
                self._dead[record.id] = record
            else:
                await self.push_records([record])
            reclaimed.append(record)
        if not self._reserved:
            self.stop_lease_watch()
        return reclaimed

    async def next_lease_expiry(self) -> float | None:
        first: float | None = None  # (a plain loop: this runs at every idle wait)
        for record in self._reserved.values():
            until = record.reserved_until
            if until is not None and (first is None or until < first):
                first = until
        return first

    async def counts(self, now: float) -> QueueCounts:
        ready = delayed = 0
        for heap in self._heaps.values():
            for available_at, _seq, _record in heap:
                if available_at <= now:
                    ready += 1
                else:
                    delayed += 1
        return QueueCounts(ready, delayed, len(self._reserved))

    async def next_available_at(self, queues: Sequence[str] | None) -> float | None:
        heaps = self._heaps.values() if queues is None else [self._heaps.get(q) for q in queues]
        first: float | None = None  # (a plain loop: this runs at every idle wait)
        for heap in heaps:
            if heap and (first is None or heap[0][0] < first):
                first = heap[0][0]
        return first

    async def clear_records(self) -> int:
        removed = self.pending_jobs_count + len(self._reserved)
        self._heaps.clear()
        self._reserved.clear()
        self._leases.clear()
        self.stop_lease_watch()
        return removed

    async def dead_records(self, limit: int | None = None) -> list[JobRecord]:
        records = list(self._dead.values())
        return records if limit is None else records[:limit]

    async def get_dead_record(self, job_id: str) -> JobRecord | None:
        return self._dead.get(job_id)

    async def requeue_dead_records(self, job_ids: Sequence[str] | None, now: float) -> list[JobRecord]:
        ids = list(self._dead) if job_ids is None else [i for i in dict.fromkeys(job_ids) if i in self._dead]
        records = [self._dead.pop(i) for i in ids]
        for record in records:
            record.status = JobStatus.PENDING
            record.attempts = 0
            record.available_at = now
            record.failed_at = None
        await self.push_records(records)
        return records

    async def purge_dead_records(self, job_ids: Sequence[str] | None) -> list[JobRecord]:
        ids = list(self._dead) if job_ids is None else [i for i in dict.fromkeys(job_ids) if i in self._dead]
        return [self._dead.pop(i) for i in ids]

    # -- inspection (O(n): for people, not for the hot path) -------------------------------------
    async def list_records(self, state: str, now: float, limit: int | None = None) -> list[JobRecord]:
        if state == "reserved":
            records = sorted(self._reserved.values(), key=lambda r: (r.reserved_until or 0.0, r.seq))
        else:
            due = state == "ready"
            waiting = (e[2] for heap in self._heaps.values() for e in heap if (e[0] <= now) == due)
            records = sorted(waiting, key=lambda r: (r.available_at, r.seq))
        return records if limit is None else records[:limit]

    async def get_record(self, job_id: str) -> JobRecord | None:
        found = self._reserved.get(job_id) or self._dead.get(job_id)
        if found is None:
            found = next((e[2] for heap in self._heaps.values() for e in heap if e[2].id == job_id), None)
        return found

    async def cancel_record(self, job_id: str) -> JobRecord | None:
        for heap in self._heaps.values():
            for i, entry in enumerate(heap):
                if entry[2].id == job_id:
                    heap[i] = heap[-1]
                    heap.pop()
                    heapq.heapify(heap)
                    return entry[2]
        return None


def _redelivery(record: JobRecord) -> JobRecord:
    """A copy of ``record`` (and of its live job) for the next delivery, so that a worker still
    running the old one neither settles nor sees the new delivery's state."""
    fresh = copy.copy(record)
    if record.job is not None:
        try:
            fresh.job = copy.copy(record.job)
        except Exception:  # a job object that cannot be copied is shared, as before
            fresh.job = record.job
    return fresh
