"""The dead-letter queue of a driver: jobs that failed for good, kept with their error.

Nothing is dropped silently: list them, inspect one, requeue one or all (attempts start over),
or purge them. Built once on the driver primitives, so every driver has the same operations.
"""

from __future__ import annotations

import builtins
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from .clock import to_datetime
from .events import EventKind
from .records import JobRecord

if TYPE_CHECKING:
    from .drivers.base import BaseQueueDriver


@dataclass(frozen=True)
class DeadLetter:
    """A read-only view of one dead-lettered job."""

    id: str
    type: str
    queue: str
    display_name: str
    attempts: int
    error: str | None
    error_type: str | None
    failed_at: datetime | None
    payload: dict[str, Any] | str | None
    job: Any = None

    @classmethod
    def of(cls, record: JobRecord) -> DeadLetter:
        payload = record.payload
        if payload is None and record.job is not None:
            payload = record.job.to_json()
        return cls(
            id=record.id,
            type=record.type,
            queue=record.queue,
            display_name=record.display_name,
            attempts=record.attempts,
            error=record.last_error,
            error_type=record.error_type,
            failed_at=None if record.failed_at is None else to_datetime(record.failed_at),
            payload=payload,
            job=record.job,
        )


class DeadLetterQueue:
    """``driver.dead_letters``: list, inspect, requeue and purge dead-lettered jobs."""

    def __init__(self, driver: BaseQueueDriver) -> None:
        self._driver = driver

    async def list(self, limit: int | None = None) -> list[DeadLetter]:
        """Dead-lettered jobs, oldest first."""
        records = await self._run(self._driver.dead_records(limit))
        return [DeadLetter.of(r) for r in records]

    async def get(self, job_id: str) -> DeadLetter | None:
        record = await self._run(self._driver.get_dead_record(job_id))
        return None if record is None else DeadLetter.of(record)

    async def count(self) -> int:
        return len(await self._run(self._driver.dead_records()))

    async def requeue(self, job_id: str) -> bool:
        """Put one dead-lettered job back in its queue, attempts starting over. False if unknown."""
        return len(await self._run(self._requeue([job_id]))) == 1

    async def requeue_all(self) -> int:
        """Put every dead-lettered job back; returns how many."""
        return len(await self._run(self._requeue(None)))

    async def purge(self, job_ids: Sequence[str] | None = None) -> int:
        """Delete dead-lettered jobs (all, or those in ``job_ids``); returns how many."""
        return cast(int, await self._run(self._purge(job_ids)))

    async def stats(self) -> dict[str, Any]:
        """The spec's ``dlq`` statistics: ``total_jobs`` and ``jobs_by_type``."""
        return cast(dict[str, Any], await self._run(self.stats_unlocked()))

    async def stats_unlocked(self) -> dict[str, Any]:
        records = await self._driver.dead_records()
        by_type = Counter(r.type for r in records)
        return {"total_jobs": len(records), "jobs_by_type": dict(sorted(by_type.items()))}

    async def _requeue(self, job_ids: Sequence[str] | None) -> builtins.list[JobRecord]:
        driver = self._driver
        now = driver.clock.time()
        records = await driver.requeue_dead_records(job_ids, now)
        for record in records:
            driver.emit(EventKind.REQUEUED, record, available_at=record.available_at, time=now)
            driver.notify(record.queue, record.available_at)
        await driver.after_store(records)
        return records

    async def _purge(self, job_ids: Sequence[str] | None) -> int:
        driver = self._driver
        records = await driver.purge_dead_records(job_ids)
        for record in records:
            driver.emit(EventKind.PURGED, record)
        return len(records)

    async def _run(self, coro: Any) -> Any:
        return await self._driver.clock.run_coroutine(coro)
