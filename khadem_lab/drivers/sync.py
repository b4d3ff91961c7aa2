"""SynchronousDriver: runs each job inside ``dispatch``, through the normal retry path.

``await qm.dispatch(job)`` returns once the job has completed or failed for good. A delay is
honoured by waiting on the clock (virtual time in a simulation), and so are retry delays. Events,
metrics and the dead-letter queue work as for every other driver. Workers get nothing from it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..events import EventKind
from ..execution import Outcome, execute
from ..records import JobRecord, QueueCounts
from .memory import InMemoryDriver


class SynchronousDriver(InMemoryDriver):
    """The spec's sync driver: no queueing, immediate execution (after any delay)."""

    driver_type = "sync"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._inline: dict[str, JobRecord] = {}  # dispatched jobs not yet run (waiting out a delay)

    async def after_store(self, records: list[JobRecord]) -> None:
        for record in records:
            await self._run_inline(record)

    async def _run_inline(self, record: JobRecord) -> None:
        clock = self.clock
        while True:
            now = clock.time()
            if record.available_at > now:
                await clock.sleep(record.available_at - now)
                now = clock.time()
            if self._inline.pop(record.id, None) is None:
                return  # cleared while it waited: it never runs
            self._mark_reserved(record, now, "sync")
            self.emit(EventKind.RESERVED, record, worker="sync", time=now)
            if await execute(self, record, worker="sync") is not Outcome.RETRY:
                return

    # -- primitives that differ: jobs wait in `_inline`, never in the worker heaps ---------------
    async def push_records(self, records: Sequence[JobRecord]) -> None:
        for record in records:
            record.seq = next(self._seq)
            self._inline[record.id] = record

    def _stored_ids(self) -> set[str]:
        return super()._stored_ids() | self._inline.keys()

    async def release_record(self, record: JobRecord) -> bool:
        if self._reserved.pop(record.id, None) is not record:
            return False  # cleared while it ran
        record.seq = next(self._seq)
        self._inline[record.id] = record
        return True

    async def reserve_record(
        self, queues: Sequence[str] | None, now: float, worker: str | None
    ) -> JobRecord | None:
        return None  # jobs run inside dispatch; there is nothing for a worker

    async def reclaim_expired(self, now: float) -> list[JobRecord]:
        return []  # a running job is held by the dispatch that runs it, not by a worker that may vanish

    async def next_lease_expiry(self) -> float | None:
        return None

    async def counts(self, now: float) -> QueueCounts:
        ready = sum(1 for r in self._inline.values() if r.available_at <= now)
        return QueueCounts(ready, len(self._inline) - ready, len(self._reserved))

    async def next_available_at(self, queues: Sequence[str] | None) -> float | None:
        return None

    async def clear_records(self) -> int:
        removed = len(self._inline) + len(self._reserved)
        self._inline.clear()
        self._reserved.clear()
        return removed

    @property
    def pending_jobs_count(self) -> int:
        return len(self._inline)

    @property
    def is_empty(self) -> bool:
        return not self._inline and not self._reserved
