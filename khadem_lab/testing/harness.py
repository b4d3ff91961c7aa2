"""The contract suite's harness: one driver on its own simulation, with an event log.

Nothing here imports pytest: :func:`khadem_lab.testing.run_contract` runs the checks with it in a
notebook or a script, and :class:`khadem_lab.testing.contract.DriverContract` under pytest.
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from ..clock import Clock
from ..config import DriverConfig
from ..dlq import DeadLetter
from ..drivers.base import BaseQueueDriver
from ..events import EventKind, EventLog, QueueEvent
from ..job import QueueJob
from ..records import JobRecord, QueueCounts
from ..registry import JobRegistry
from ..simulation import Simulation
from ..worker import Worker

T = TypeVar("T")

#: ``build(config, clock, registry, tmp_path)``: a new driver with that config, on that clock, with
#: that job registry; ``tmp_path`` is a fresh empty directory it may keep files in.
DriverBuilder = Callable[[DriverConfig, Clock, JobRegistry, Path], BaseQueueDriver]


@dataclass(frozen=True)
class DriverCase:
    """One driver under the contract suite, with its capabilities.

    ``runs_inline``: jobs run inside dispatch (the sync driver): there is no queue for ``reserve``
    or a worker to take from, and no lease to expire; the checks about those are skipped, saying so.
    """

    name: str
    build: DriverBuilder
    runs_inline: bool = False

    def __str__(self) -> str:
        return self.name


class QueueHarness:
    """One driver on its own simulation, with an event log and helpers that keep tests short.

    ``dispatch`` works the same for every driver: for inline drivers the push runs as a background
    task (it returns only once the job has run), so the test keeps moving time with ``advance``.
    """

    def __init__(self, case: DriverCase, sim: Simulation, driver: BaseQueueDriver, registry: JobRegistry):
        self.case = case
        self.sim = sim
        self.driver = driver
        self.registry = registry
        self.log = EventLog()
        driver.subscribe(self.log)
        self.t0 = sim.time()
        self.workers: list[Worker] = []

    @property
    def runs_inline(self) -> bool:
        return self.case.runs_inline

    # -- time ----------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.sim.time()

    @property
    def elapsed(self) -> float:
        """Virtual seconds since the harness was made."""
        return self.sim.time() - self.t0

    def advance(self, seconds: float) -> None:
        self.sim.advance(seconds=seconds)

    def run(self, coro: Awaitable[T]) -> T:
        return self.sim.run(coro)

    # -- the public API ---------------------------------------------------------------------------
    def register(self, cls: type[QueueJob]) -> None:
        if not self.registry.is_registered(cls):
            self.registry.register(cls)

    def dispatch(
        self,
        job: QueueJob,
        delay: timedelta | float | None = None,
        *,
        at: datetime | None = None,
        queue: str | None = None,
        job_id: str | None = None,
    ) -> str:
        ids = None if job_id is None else [job_id]
        return self.dispatch_many([job], delay, at=at, queue=queue, job_ids=ids)[0]

    def dispatch_many(
        self,
        jobs: Sequence[QueueJob],
        delay: timedelta | float | None = None,
        *,
        at: datetime | None = None,
        queue: str | None = None,
        job_ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Dispatch ``jobs``; their ids. On a driver that runs jobs inside dispatch, the push runs
        as a task until it waits, and the ids are ``job_ids`` or those of the jobs it stored."""
        for job in jobs:
            self.register(type(job))
        if not self.runs_inline:
            return self.run(self.driver.push_many(jobs, delay, at=at, queue=queue, job_ids=job_ids))
        seen = len(self.log)
        self.sim.spawn(_awaited(self.driver.push_many(jobs, delay, at=at, queue=queue, job_ids=job_ids)))
        self.advance(0)  # the push runs now, until it waits (a delay, a retry, a job's work)
        if job_ids is not None:
            return list(job_ids)
        return [e.job_id for e in list(self.log)[seen:] if e.kind is EventKind.DISPATCHED]

    def start_worker(
        self,
        queues: Sequence[str] | None = None,
        *,
        name: str = "w1",
        concurrency: int = 1,
        prefetch: int = 1,
    ) -> Worker:
        worker = Worker(self.driver, name=name, queues=queues, concurrency=concurrency, prefetch=prefetch)
        worker.task = self.sim.spawn(worker.run(), name=name)
        self.workers.append(worker)
        return worker

    def reserve(self, queues: Sequence[str] | None = None, worker: str = "w1") -> JobRecord | None:
        """Reserve as a worker does (expired leases are reclaimed first)."""
        return self.run(self.driver.reserve(queues, worker=worker))

    def process(self, queues: Sequence[str] | None = None) -> bool:
        return self.run(self.driver.process(queues))

    def counts(self) -> QueueCounts:
        return self.run(self.driver.counts(self.sim.time()))

    def size(self) -> int:
        return self.run(self.driver.size())

    def stats(self) -> dict[str, Any]:
        return self.run(self.driver.get_stats())

    def dead(self) -> list[DeadLetter]:
        return self.run(self.driver.dead_letters.list())

    # -- observation ------------------------------------------------------------------------------
    def events(self, job_id: str | None = None, *kinds: EventKind) -> list[QueueEvent]:
        return [
            e
            for e in self.log.events
            if (job_id is None or e.job_id == job_id) and (not kinds or e.kind in kinds)
        ]

    def timeline(self, job_id: str | None = None) -> list[tuple[float, EventKind, int]]:
        """(elapsed seconds, kind, attempt) of each event of one job (or all jobs)."""
        return [(e.time - self.t0, e.kind, e.attempt) for e in self.events(job_id)]

    def starts(self) -> list[tuple[float, str]]:
        """(elapsed seconds, job id) of every run, in the order they started."""
        return [(e.time - self.t0, e.job_id) for e in self.events(None, EventKind.STARTED)]

    def close(self) -> None:
        if not self.sim._closed:
            self.run(self.driver.dispose())
            self.sim.close()


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


#: ``make_queue(**DriverConfig fields)``: a fresh driver of the case on its own simulation.
MakeQueue = Callable[..., QueueHarness]


class QueueMaker:
    """``make_queue`` for one check: builds harnesses of ``case`` and closes them all at the end.

    ``tmp_path``: the directory the drivers may keep files in (a temporary one, removed on
    :meth:`close`, if None)."""

    def __init__(self, case: DriverCase, tmp_path: Path | None = None) -> None:
        self.case = case
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if tmp_path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="khadem-contract-")
            tmp_path = Path(self._tmp.name)
        self.tmp_path = tmp_path
        self.made: list[QueueHarness] = []

    def __call__(self, **config: Any) -> QueueHarness:
        sim = Simulation()
        try:
            registry = JobRegistry()
            name = config.pop("name", "contract")
            driver = self.case.build(DriverConfig(name=name, **config), sim.clock, registry, self.tmp_path)
        except BaseException:
            sim.close()
            raise
        harness = QueueHarness(self.case, sim, driver, registry)
        self.made.append(harness)
        return harness

    def close(self) -> None:
        """Dispose of every driver made and close its simulation; remove the temporary directory."""
        try:
            while self.made:
                self.made.pop(0).close()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()

    def __enter__(self) -> QueueMaker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SkipCheck(Exception):
    """Raised by a check that does not apply to the driver (the reason is its message)."""


def needs_queue(harness: QueueHarness) -> None:
    """Skip, saying why, for drivers that run jobs inside dispatch and so have no queue to take from."""
    if harness.runs_inline:
        raise SkipCheck(
            f"{harness.case.name} runs jobs inside dispatch: nothing is queued for reserve or workers"
        )


def needs_job_ids(harness: QueueHarness) -> None:
    """Skip, saying why, for drivers without :meth:`~BaseQueueDriver.push_new_records` (their
    dispatch refuses ``job_id=`` with an error that says so); a driver that has it is held to it."""
    if type(harness.driver).push_new_records is BaseQueueDriver.push_new_records:
        raise SkipCheck(
            f"{harness.case.name} has no push_new_records: dispatch with job_id= is refused; implement "
            "it to make a retried dispatch safe"
        )
