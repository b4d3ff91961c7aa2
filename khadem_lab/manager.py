"""QueueManager: the spec's front door. Drivers by name, dispatch, process, workers.

::

    qm = QueueManager({"queue": {"default": "memory", "drivers": {"memory": {"driver": "memory"}}}})
    qm.load_from_config()
    await qm.dispatch(SendEmail("a@example.com"), delay=timedelta(minutes=5))
    worker = await qm.start_worker(run_in_background=True, concurrency=4)

Every call runs on the loop of the manager's clock: under a :class:`~khadem_lab.simulation.Simulation`
that is the virtual loop, whichever loop (a notebook cell's, a test's) awaits the call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .clock import Clock, SystemClock, VirtualClock
from .config import DriverConfig, parse_queue_config
from .drivers.base import BaseQueueDriver
from .drivers.factory import QueueFactory
from .drivers.memory import InMemoryDriver
from .errors import UnknownDriverError
from .events import EventBus, EventKind, QueueEvent
from .execution import Hooks, OnError, OnJobComplete, OnJobError, OnJobStart
from .job import QueueJob
from .worker import Worker

log = logging.getLogger(__name__)


class QueueManager:
    """Holds the drivers and runs dispatch, process and workers on one clock.

    ``config``: a dict in the spec's layout, or the path of a JSON or YAML file (validated now,
    drivers built by :meth:`load_from_config`). ``driver``: register this driver as the default.
    ``clock``: :class:`~khadem_lab.clock.SystemClock` unless given (``sim.clock`` to simulate).
    With no driver at all, the first use registers an in-memory driver named ``memory``.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | str | Path | None = None,
        *,
        driver: BaseQueueDriver | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.settings = parse_queue_config(config)
        self.events = EventBus()
        self._drivers: dict[str, BaseQueueDriver] = {}
        self._default: str | None = None
        self._workers: list[Worker] = []
        self._worker_numbers = itertools.count(1)
        if driver is not None:
            self.register_driver(driver.name, driver)
            self._default = driver.name

    # -- drivers ----------------------------------------------------------------------------------
    def load_from_config(self) -> list[str]:
        """Build and register every driver of the config; returns their names."""
        for spec in self.settings.drivers.values():
            if spec.name not in self._drivers:
                driver = QueueFactory.create(spec.driver_type, spec.config, spec.options, self.clock)
                self.register_driver(spec.name, driver)
        if self.settings.default is not None:
            self._default = self.settings.default
        return list(self.settings.drivers)

    def register_driver(self, name: str, driver: BaseQueueDriver) -> None:
        """Add ``driver`` under ``name`` (the first one registered becomes the default)."""
        if not isinstance(driver, BaseQueueDriver):
            raise TypeError(f"register_driver({name!r}, ...) needs a BaseQueueDriver, got {driver!r}")
        driver.bind_clock(self.clock)
        old = self._drivers.get(name)
        if old is not None and old is not driver:
            raise ValueError(f"a different driver is already registered as {name!r}")
        if old is None:
            driver.events.forward_to(self.events)
        self._drivers[name] = driver
        if self._default is None:
            self._default = name

    def set_default_driver(self, name: str) -> None:
        self._require(name)
        self._default = name

    def get_driver(self, name: str | None = None) -> BaseQueueDriver:
        """The driver called ``name`` (the default one if None)."""
        if name is None:
            if self._default is None:
                self.register_driver("memory", InMemoryDriver(DriverConfig(name="memory")))
            assert self._default is not None
            name = self._default
        driver = self._drivers.get(name)
        return driver if driver is not None else self._require(name)

    @property
    def driver(self) -> BaseQueueDriver:
        """The default driver."""
        return self.get_driver()

    @property
    def driver_names(self) -> list[str]:
        return list(self._drivers)

    def has_driver(self, name: str) -> bool:
        return name in self._drivers

    @property
    def default_driver_name(self) -> str | None:
        return self._default

    def _require(self, name: str) -> BaseQueueDriver:
        try:
            return self._drivers[name]
        except KeyError:
            raise UnknownDriverError(name, self._drivers) from None

    # -- jobs ---------------------------------------------------------------------------------------
    def dispatch(
        self,
        job: QueueJob,
        delay: timedelta | float | None = None,
        *,
        at: datetime | None = None,
        queue: str | None = None,
        driver: str | None = None,
    ) -> Awaitable[str]:
        """Queue ``job``: now, after ``delay``, or at the absolute time ``at``; on ``queue``
        (default: the job's) of ``driver`` (default: the default driver). Await it for the job id.

        (Like every manager call, it is awaited: ``await qm.dispatch(job)``. It hands back the
        driver's own coroutine rather than wrapping it in another, as this is the hot path.)"""
        return self.get_driver(driver).push(job, delay, at=at, queue=queue)

    def dispatch_batch(
        self,
        jobs: Iterable[QueueJob],
        delay: timedelta | float | None = None,
        *,
        at: datetime | None = None,
        queue: str | None = None,
        driver: str | None = None,
    ) -> Awaitable[list[str]]:
        """Queue several jobs in one storage operation; each gets the same delay. Await it for
        the ids."""
        return self.get_driver(driver).push_many(list(jobs), delay, at=at, queue=queue)

    def process(self, *, queues: Sequence[str] | None = None, driver: str | None = None) -> Awaitable[bool]:
        """Run at most one available job (retries and dead-lettering included). Await it: True if
        one ran."""
        return self.get_driver(driver).process(queues)

    # -- workers ------------------------------------------------------------------------------------
    async def start_worker(
        self,
        max_jobs: int | None = None,
        delay: timedelta | float | None = None,
        timeout: timedelta | float | None = None,
        run_in_background: bool = False,
        on_job_start: OnJobStart | None = None,
        on_job_complete: OnJobComplete | None = None,
        on_job_error: OnJobError | None = None,
        on_error: OnError | None = None,
        *,
        concurrency: int = 1,
        queues: Sequence[str] | None = None,
        driver: str | None = None,
        name: str | None = None,
        prefetch: int = 1,
    ) -> Worker:
        """Start a worker, as in the spec.

        ``max_jobs``: stop after that many jobs (None: never). ``delay``: pause after each job.
        ``timeout``: stop after that long (the job in hand finishes). ``run_in_background``:
        return at once with the running :class:`~khadem_lab.worker.Worker` (stop it with
        ``await worker.stop()``); otherwise return when it ends. ``concurrency``: jobs at once.
        ``queues``: the queues to take jobs from, in priority order (None: all). ``prefetch``:
        each slot reserves up to that many jobs at once and acks finished ones together (fewer
        round trips to a remote store; the prefetched jobs are in hand: a graceful stop finishes
        them, and a crash before their acks makes them run again once their leases end).
        """
        worker = Worker(
            self.get_driver(driver),
            name=name or f"worker-{next(self._worker_numbers)}",
            queues=queues,
            concurrency=concurrency,
            max_jobs=max_jobs,
            delay=delay,
            timeout=timeout,
            hooks=Hooks(on_job_start, on_job_complete, on_job_error, on_error),
            prefetch=prefetch,
        )
        self._workers.append(worker)
        if run_in_background:
            return await self.clock.run_coroutine(self._launch(worker))
        foreground = self._launch_and_wait(worker)
        foreground.__qualname__ = "QueueManager.start_worker"  # type: ignore[attr-defined]  # named in stall errors
        await self.clock.run_coroutine(foreground)
        return worker

    async def _launch(self, worker: Worker) -> Worker:
        worker.task = asyncio.get_running_loop().create_task(worker.run(), name=worker.name)
        if isinstance(self.clock, VirtualClock):
            worker.task.add_done_callback(self.clock.simulation.report_failure)
        else:
            worker.task.add_done_callback(_log_failure)
        return worker

    async def _launch_and_wait(self, worker: Worker) -> None:
        await self._launch(worker)
        assert worker.task is not None
        await worker.task

    @property
    def workers(self) -> list[Worker]:
        """Workers started by this manager that are still running."""
        return [w for w in self._workers if w.running]

    async def stop_workers(self, *, graceful: bool = True) -> None:
        """Stop every running worker and wait for them."""
        for worker in self.workers:
            await worker.stop(graceful=graceful)

    # -- observation ------------------------------------------------------------------------------
    def subscribe(
        self, subscriber: Callable[[QueueEvent], object], kinds: Iterable[EventKind] | None = None
    ) -> Callable[[], None]:
        """Receive every lifecycle event of every driver (of ``kinds`` only, if given); returns an
        unsubscribe function."""
        return self.events.subscribe(subscriber, kinds)

    async def get_stats(self, driver: str | None = None) -> dict[str, Any]:
        return await self.get_driver(driver).get_stats()

    async def dispose(self) -> None:
        """Stop workers and release every driver."""
        await self.stop_workers()
        for driver in self._drivers.values():
            await driver.dispose()

    def __repr__(self) -> str:
        return f"QueueManager(drivers={self.driver_names}, default={self._default!r}, clock={self.clock!r})"


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("queue worker %s crashed", task, exc_info=task.exception())
