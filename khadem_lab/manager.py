"""QueueManager: the spec's front door. Drivers by name, dispatch, process, workers.

::

    qm = QueueManager({"queue": {"default": "memory", "drivers": {"memory": {"driver": "memory"}}}})
    qm.load_from_config()
    await qm.dispatch(SendEmail("a@example.com"), delay=timedelta(minutes=5))
    worker = await qm.start_worker(run_in_background=True, concurrency=4)

Every call runs on the loop of the manager's clock: under a :class:`~khadem_lab.simulation.Simulation`
that is the virtual loop, whichever loop (a notebook cell's, a test's) awaits the call.

Every call that does something returns a :class:`ManagerCall`, to be awaited. One that is dropped
without being awaited (``qm.dispatch(job)`` without ``await``: nothing is queued) says so at once, with
a ``RuntimeWarning`` at the line that dropped it, naming the call and the job.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import sys
import types
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from .clock import Clock, SystemClock, VirtualClock
from .config import DriverConfig, parse_queue_config
from .drivers.base import BaseQueueDriver
from .drivers.factory import QueueFactory
from .drivers.memory import InMemoryDriver
from .errors import UnknownDriverError
from .events import EventBus, EventKind, QueueEvent, SubscriberErrors
from .execution import Hooks, OnError, OnJobComplete, OnJobError, OnJobStart
from .job import QueueJob
from .worker import Worker

log = logging.getLogger(__name__)
T = TypeVar("T")

#: What did not happen, by call, when a call was never awaited.
_NOT_DONE = {
    "process": "no job was run",
    "start_worker": "no worker was started",
    "get_stats": "nothing was read",
    "stop_workers": "no worker was stopped",
    "dispose": "nothing was stopped or released",
}
_LONGEST_REPR = 160  # of a job, in a message


class ManagerCall(Coroutine[Any, Any, T]):
    """A :class:`QueueManager` call, to be awaited: ``await qm.dispatch(job)``.

    It runs only when awaited, or run as a task: ``asyncio.gather``, ``create_task``, ``sim.run``
    and ``sim.spawn`` take it as the coroutine it is. Dropped without that (``qm.dispatch(job)``,
    the ``await`` forgotten) it warns at once, at the line that dropped it, every time::

        RuntimeWarning: qm.dispatch(Job(...)) was never awaited: the job was NOT queued. Write
        `await qm.dispatch(...)`.

    and closes what it held, so that no "coroutine ... was never awaited" about internals follows.
    While it is pending its repr says the same (a notebook cell ending with ``qm.dispatch(job)``
    displays that, and then no warning follows when the output history lets it go).

    Cheap on the hot path: slots; ``__await__`` hands over the inner coroutine's own iterator; and
    ``__del__`` does work only for a call that was never awaited.
    """

    # `__qualname__` ("QueueManager.dispatch"), per instance, as a coroutine has: SimulationStalled
    # names it. (A slot, not a `__getattr__`, which would slow every attribute read down.)
    __slots__ = ("__qualname__", "_awaitable", "_iterator", "_manager", "_subject", "_told")
    _iterator: Generator[Any, None, T]  # set when a task first runs it (see send)
    _told: bool  # set when its repr said it was not awaited

    def __init__(self, awaitable: Awaitable[T], call: str, subject: object, manager: QueueManager) -> None:
        self._awaitable: Awaitable[T] | None = awaitable  # None once awaited or closed
        self.__qualname__ = call  # "QueueManager." and the method's name
        self._subject = subject  # the job; the list of jobs; "..." if the call had arguments, or ""
        self._manager = manager

    def __await__(self) -> Generator[Any, None, T]:
        awaitable = self._awaitable
        if awaitable is None:
            name = _name_of(self._manager, sys._getframe(1))
            raise RuntimeError(f"{self._describe(name)} was already awaited; call it again to do it again")
        self._awaitable = None
        return awaitable.__await__()

    # -- the coroutine protocol, for tasks (gather, ensure_future, create_task, sim.spawn) --------
    def send(self, value: Any) -> Any:
        try:
            iterator = self._iterator
        except AttributeError:
            iterator = self._iterator = self.__await__()
        return iterator.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        try:
            iterator = self._iterator
        except AttributeError:
            iterator = self._iterator = self.__await__()
        if val is None and tb is None:
            return iterator.throw(typ)
        return iterator.throw(typ, val, tb)

    def close(self) -> None:
        """Give the call up without running it (or stop it, if a task runs it): no warning."""
        awaitable, self._awaitable = self._awaitable, None
        if awaitable is not None:
            _close_unstarted(awaitable)
            return
        try:
            iterator = self._iterator
        except AttributeError:
            return
        iterator.close()

    # -- telling a forgotten await ----------------------------------------------------------------
    def __del__(self) -> None:
        if self._awaitable is not None:
            self._never_awaited()

    def _never_awaited(self) -> None:
        awaitable, self._awaitable = self._awaitable, None
        _close_unstarted(awaitable)  # so that Python's own "coroutine ... never awaited" does not follow
        try:
            if self._told:  # its repr said so already (a notebook cell displayed it)
                return
        except AttributeError:
            pass
        try:
            frame: types.FrameType | None = sys._getframe(2)  # the code that dropped the call
        except ValueError:  # no Python code on the stack (interpreter shutdown)
            frame = None
        name = _name_of(self._manager, frame)
        text = (
            f"{self._describe(name)} was never awaited: {self._not_done(now=False)}. "
            f"Write `{self._fix(name)}`."
        )
        if frame is None:
            warnings.warn(text, RuntimeWarning, stacklevel=1)
            return
        # With no registry, shown every time rather than once per line: a learner re-runs a cell.
        warnings.warn_explicit(
            text,
            RuntimeWarning,
            frame.f_code.co_filename,
            frame.f_lineno,
            module=frame.f_globals.get("__name__"),
            module_globals=frame.f_globals,
        )

    def __repr__(self) -> str:
        if self._awaitable is None:
            return f"<{self._describe('qm')} awaited>"
        self._told = True
        name = _name_of(self._manager, sys._getframe(1))
        return f"<{self._describe(name)} not awaited: {self._not_done(now=True)}. Write `{self._fix(name)}`>"

    @property
    def _call(self) -> str:
        return self.__qualname__.rpartition(".")[2]

    def _describe(self, name: str) -> str:
        subject = self._subject
        if isinstance(subject, list):
            shown = _short_repr(subject[0]) + (", ..." if len(subject) > 1 else "") if subject else ""
            return f"{name}.{self._call}([{shown}])"
        if isinstance(subject, QueueJob):
            return f"{name}.{self._call}({_short_repr(subject)})"
        return f"{name}.{self._call}({subject})"

    def _not_done(self, *, now: bool) -> str:
        subject = self._subject
        count = len(subject) if isinstance(subject, list) else 1 if isinstance(subject, QueueJob) else None
        if count is None:
            return _NOT_DONE[self._call]
        if count == 1:
            return f"the job {'is' if now else 'was'} NOT queued"
        return f"the {count} jobs {'are' if now else 'were'} NOT queued"

    def _fix(self, name: str) -> str:
        args = "" if self._subject == "" else "..."
        assign = "worker = " if self._call == "start_worker" else ""
        return f"{assign}await {name}.{self._call}({args})"


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _LONGEST_REPR else text[: _LONGEST_REPR - 3] + "..."


def _name_of(manager: QueueManager, frame: types.FrameType | None) -> str:
    """The learner's name for ``manager`` (in ``frame``, its module, or ``__main__``), else "qm"."""
    scopes: list[Mapping[str, Any]] = []
    if frame is not None:
        scopes += [frame.f_locals, frame.f_globals]
    main = sys.modules.get("__main__")
    if main is not None:
        scopes.append(vars(main))
    for scope in scopes:
        for name, value in list(scope.items()):
            if value is manager and not name.startswith("_"):
                return name
    return "qm"


def _close_unstarted(awaitable: object) -> None:
    """Close a call that never ran, and the coroutines it was handed (off its loop, the clock wraps
    the driver's coroutine in one of its own), so that none warns "coroutine ... never awaited"."""
    if isinstance(awaitable, types.CoroutineType):
        inner: list[Coroutine[Any, Any, Any]] = []
        frame = awaitable.cr_frame
        if frame is not None and inspect.getcoroutinestate(awaitable) == inspect.CORO_CREATED:
            inner = [value for value in frame.f_locals.values() if isinstance(value, Coroutine)]
        awaitable.close()
        for coroutine in inner:
            _close_unstarted(coroutine)
    elif isinstance(awaitable, Coroutine):
        awaitable.close()


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
        job_id: str | None = None,
    ) -> ManagerCall[str]:
        """Queue ``job``: now, after ``delay``, or at the absolute time ``at``; on ``queue``
        (default: the job's) of ``driver`` (default: the default driver). Await it for the job id.

        ``job_id``: an id of your choosing (``"order-42"``): a job is stored once per id, so a
        dispatch whose reply was lost can be sent again safely; a second dispatch of the same job
        returns the id and stores nothing (see :mod:`khadem_lab.drivers.jobids`).

        (Like every manager call, it is awaited: ``await qm.dispatch(job)``; without the ``await``
        nothing is queued, and a warning says so.)"""
        target = self._drivers.get(self._default) if driver is None else None  # type: ignore[arg-type]
        if target is None:
            target = self.get_driver(driver)
        if job_id is None:
            pushed = target.push(job, delay, at=at, queue=queue)
        else:
            pushed = target.push(job, delay, at=at, queue=queue, job_id=job_id)
        return ManagerCall(pushed, "QueueManager.dispatch", job, self)

    def dispatch_batch(
        self,
        jobs: Iterable[QueueJob],
        delay: timedelta | float | None = None,
        *,
        at: datetime | None = None,
        queue: str | None = None,
        driver: str | None = None,
        job_ids: Sequence[str] | None = None,
    ) -> ManagerCall[list[str]]:
        """Queue several jobs in one storage operation; each gets the same delay. Await it for
        the ids. ``job_ids``: one id of your choosing per job (see :meth:`dispatch`)."""
        batch = list(jobs)
        return ManagerCall(
            self.get_driver(driver).push_many(batch, delay, at=at, queue=queue, job_ids=job_ids),
            "QueueManager.dispatch_batch",
            batch,
            self,
        )

    def process(self, *, queues: Sequence[str] | None = None, driver: str | None = None) -> ManagerCall[bool]:
        """Run at most one available job (retries and dead-lettering included). Await it: True if
        one ran."""
        args = "..." if queues is not None or driver is not None else ""
        return ManagerCall(self.get_driver(driver).process(queues), "QueueManager.process", args, self)

    # -- workers ------------------------------------------------------------------------------------
    def start_worker(
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
        burst: bool = False,
        release_on_stop: bool = False,
    ) -> ManagerCall[Worker]:
        """Start a worker, as in the spec: ``worker = await qm.start_worker(...)``.

        ``max_jobs``: stop after that many jobs (None: never). ``delay``: pause after each job.
        ``timeout``: stop after that long (the job in hand finishes). ``run_in_background``:
        return at once with the running :class:`~khadem_lab.worker.Worker` (stop it with
        ``await worker.stop()``); otherwise return when it ends. ``concurrency``: jobs at once.
        ``queues``: the queues to take jobs from, in priority order (None: all). ``prefetch``:
        each slot reserves up to that many jobs at once and acks finished ones together (fewer
        round trips to a remote store; the prefetched jobs are in hand: a graceful stop finishes
        them, and a crash before their acks makes them run again once their leases end).
        ``burst``: end when no job is ready (as ``rq worker --burst``), instead of waiting.
        ``release_on_stop``: a graceful stop releases the prefetched jobs not started yet at once
        (for other workers; their attempt stays counted) instead of finishing them.
        """
        start = self._start_worker(
            max_jobs,
            delay,
            timeout,
            run_in_background,
            Hooks(on_job_start, on_job_complete, on_job_error, on_error),
            concurrency=concurrency,
            queues=queues,
            driver=driver,
            name=name,
            prefetch=prefetch,
            burst=burst,
            release_on_stop=release_on_stop,
        )
        return ManagerCall(start, "QueueManager.start_worker", "...", self)

    async def _start_worker(
        self,
        max_jobs: int | None,
        delay: timedelta | float | None,
        timeout: timedelta | float | None,
        run_in_background: bool,
        hooks: Hooks,
        *,
        concurrency: int,
        queues: Sequence[str] | None,
        driver: str | None,
        name: str | None,
        prefetch: int,
        burst: bool = False,
        release_on_stop: bool = False,
    ) -> Worker:
        worker = Worker(
            self.get_driver(driver),
            name=name or f"worker-{next(self._worker_numbers)}",
            queues=queues,
            concurrency=concurrency,
            max_jobs=max_jobs,
            delay=delay,
            timeout=timeout,
            hooks=hooks,
            prefetch=prefetch,
            burst=burst,
            release_on_stop=release_on_stop,
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

    def stop_workers(self, *, graceful: bool = True) -> ManagerCall[None]:
        """Stop every running worker and wait for them."""
        return ManagerCall(
            self._stop_workers(graceful), "QueueManager.stop_workers", "" if graceful else "...", self
        )

    async def _stop_workers(self, graceful: bool) -> None:
        for worker in self.workers:
            await worker.stop(graceful=graceful)

    # -- observation ------------------------------------------------------------------------------
    def subscribe(
        self, subscriber: Callable[[QueueEvent], object], kinds: Iterable[EventKind] | None = None
    ) -> Callable[[], None]:
        """Receive every lifecycle event of every driver (of ``kinds`` only, if given); returns an
        unsubscribe function."""
        return self.events.subscribe(subscriber, kinds)

    @property
    def subscriber_errors(self) -> list[SubscriberErrors]:
        """Subscribers of this manager (:meth:`subscribe`) that raised: how often, the last error.
        (They are still called; the log shows the first traceback, then a line at 10, 100, ...)"""
        return self.events.subscriber_errors

    def get_stats(self, driver: str | None = None) -> ManagerCall[dict[str, Any]]:
        """The statistics of ``driver`` (the default one if None); see ``BaseQueueDriver.get_stats``."""
        return ManagerCall(
            self._get_stats(driver), "QueueManager.get_stats", "" if driver is None else "...", self
        )

    async def _get_stats(self, driver: str | None) -> dict[str, Any]:
        return await self.get_driver(driver).get_stats()

    def dispose(self) -> ManagerCall[None]:
        """Stop workers and release every driver."""
        return ManagerCall(self._dispose(), "QueueManager.dispose", "", self)

    async def _dispose(self) -> None:
        await self._stop_workers(True)
        for driver in self._drivers.values():
            await driver.dispose()

    def __repr__(self) -> str:
        return f"QueueManager(drivers={self.driver_names}, default={self._default!r}, clock={self.clock!r})"


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("queue worker %s crashed", task, exc_info=task.exception())
