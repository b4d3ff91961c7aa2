"""Simulated time that works the same from a script, from pytest and from a Jupyter cell.

A :class:`Simulation` owns a :class:`~khadem_lab.vloop.VirtualTimeLoop` that lives on one helper
thread. ``sim.advance(minutes=5)`` is a plain blocking call (a cell, a widget callback, a test);
``await sim.advance_async(minutes=5)`` keeps a notebook kernel responsive. Manager calls made from
any other loop (``await qm.dispatch(job)`` in a cell, whose loop is ipykernel's) are carried over to
the virtual loop by the clock, so code written as in the spec runs unchanged.

Time moves only inside these calls. Everything due is run in time order; at each instant every
woken task runs until it blocks again before time moves on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import math
import random
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from .clock import VirtualClock, to_datetime, to_seconds, to_timestamp
from .errors import BackgroundTaskError, SimulationError, SimulationStalled
from .vloop import VirtualTimeLoop

T = TypeVar("T")

#: Where a simulation starts unless told otherwise: a fixed date, so output is reproducible.
DEFAULT_START = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)


class Simulation:
    """A virtual clock and the loop it drives.

    ``start`` is the simulated start date (default :data:`DEFAULT_START`); ``seed`` seeds
    :attr:`rng`, the random generator scenarios should draw from so that runs repeat exactly.
    With ``wallclock=True``, ``datetime.now()`` and ``time.time()`` inside job code return virtual
    time while the simulation runs (a freezegun bridge, switched on only during each run).
    """

    def __init__(
        self,
        start: datetime = DEFAULT_START,
        *,
        seed: int = 0,
        livelock_budget: int = 1_000_000,
        wallclock: bool = False,
    ) -> None:
        self.start = start if start.tzinfo else start.replace(tzinfo=UTC)
        self.loop = VirtualTimeLoop(to_timestamp(self.start), livelock_budget=livelock_budget)
        self.loop.set_exception_handler(self._on_loop_error)
        self.clock = VirtualClock(self)
        self.rng = random.Random(seed)
        self.seed = seed
        self.wallclock = wallclock
        self._errors: list[BaseException] = []
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="khadem-sim")
        self._thread_id = self._pool.submit(threading.get_ident).result()
        self._closed = False

    # -- reading time ---------------------------------------------------------------------------
    def now(self) -> datetime:
        """Virtual now, as an aware UTC datetime."""
        return to_datetime(self.loop.time())

    def time(self) -> float:
        """Virtual now, as seconds since the epoch."""
        return self.loop.time()

    @property
    def elapsed(self) -> timedelta:
        """Virtual time since the start."""
        return self.now() - self.start

    # -- moving time (blocking) -----------------------------------------------------------------
    def advance(
        self,
        delta: timedelta | float | None = None,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        days: float = 0,
    ) -> datetime:
        """Run everything that becomes due in the next ``delta``, in order; return the new now."""
        target = self.time() + _duration(delta, seconds, minutes, hours, days)
        self._call(self.loop.run_until, target)
        return self.now()

    def run_until(self, moment: datetime) -> datetime:
        """Advance to the absolute time ``moment`` (aware, or naive taken as UTC)."""
        self._call(self.loop.run_until, max(self.time(), to_timestamp(moment)))
        return self.now()

    def run_until_idle(self, limit: timedelta | float | None = None) -> datetime:
        """Run until nothing is left to do: no task ready and no timer scheduled.

        The clock stays at the last thing that happened, or ends at ``limit`` (virtual time from
        now) if work is still scheduled past it. A worker polling a shared queue always has a
        timer, so give ``limit`` there, or use :meth:`advance`.
        """
        horizon = math.inf if limit is None else self.time() + to_seconds(limit)
        self._call(self.loop.run_until, horizon, jump_to_horizon=False)
        return self.now()

    def run(self, coro: Awaitable[T]) -> T:
        """Run ``coro`` on the virtual loop until it finishes, time moving as it needs; return its result."""
        self._check_callable_or_close(coro)
        task: asyncio.Task[T] = self._call(self._run_task, coro)
        return task.result()

    # -- moving time (awaitable: the kernel stays responsive) -----------------------------------
    async def advance_async(
        self,
        delta: timedelta | float | None = None,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        days: float = 0,
    ) -> datetime:
        target = self.time() + _duration(delta, seconds, minutes, hours, days)
        await self._call_async(self.loop.run_until, target)
        return self.now()

    async def run_until_async(self, moment: datetime) -> datetime:
        await self._call_async(self.loop.run_until, max(self.time(), to_timestamp(moment)))
        return self.now()

    async def run_until_idle_async(self, limit: timedelta | float | None = None) -> datetime:
        horizon = math.inf if limit is None else self.time() + to_seconds(limit)
        await self._call_async(self.loop.run_until, horizon, jump_to_horizon=False)
        return self.now()

    async def run_async(self, coro: Awaitable[T]) -> T:
        self._check_callable_or_close(coro)
        task: asyncio.Task[T] = await self._call_async(self._run_task, coro)
        return task.result()

    # -- background tasks -------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        """Start ``coro`` as a background task; it runs as time is advanced.

        If it fails, the error is raised from the next advance, not lost.
        """
        if self._on_loop_thread():
            return self._create_task(coro, name)
        return self._pool_call(self._create_task, coro, name)

    def _create_task(self, coro: Coroutine[Any, Any, T], name: str | None) -> asyncio.Task[T]:
        task = self.loop.create_task(coro, name=name)
        task.add_done_callback(self.report_failure)
        return task

    def report_failure(self, task: asyncio.Future[Any]) -> None:
        """Done-callback for background tasks: keep the error to raise after the advance."""
        if not task.cancelled() and task.exception() is not None:
            self._errors.append(task.exception())  # type: ignore[arg-type]

    # -- closing ------------------------------------------------------------------------------------
    def close(self) -> None:
        """Cancel what still runs, close the loop and the helper thread. Idempotent."""
        if self._closed:
            return
        self._pool.submit(self._shutdown).result()
        self._pool.shutdown(wait=True)
        self._closed = True

    def _shutdown(self) -> None:
        tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:  # let them handle their cancellation; time does not move for it
            self.loop.run_until(self.loop.time())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Simulation(now={self.now().isoformat()}, seed={self.seed})"

    # -- plumbing -------------------------------------------------------------------------------------
    def _on_loop_thread(self) -> bool:
        return threading.get_ident() == self._thread_id

    def _check_callable(self) -> None:
        if self._closed:
            raise SimulationError("this Simulation is closed; create a new one")
        if self._on_loop_thread():
            raise SimulationError(
                "the simulation cannot be advanced from inside itself (from a job or a task on the "
                "virtual loop); wait with `await asyncio.sleep(seconds)` there instead"
            )

    def _check_callable_or_close(self, coro: Awaitable[Any]) -> None:
        """Like :meth:`_check_callable`, but close ``coro`` when the call cannot be made: then
        ``await qm.dispatch(job)`` after ``sim.close()`` raises only the clear error, without a
        "coroutine ... was never awaited" warning after it."""
        try:
            self._check_callable()
        except SimulationError:
            if isinstance(coro, Coroutine):
                coro.close()
            raise

    def _pool_call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self._check_callable()
        return self._pool.submit(fn, *args, **kwargs).result()

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the loop thread, blocking; job ``print()`` output lands in the caller."""
        self._check_callable()
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            try:
                result: T = self._pool.submit(self._guarded, fn, *args, **kwargs).result()
            finally:
                captured = buffer.getvalue()
        if captured:
            sys.stdout.write(captured)
        return result

    async def _call_async(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self._check_callable()
        future = self._pool.submit(self._guarded, fn, *args, **kwargs)
        return await asyncio.wrap_future(future)

    def _guarded(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """On the loop thread: run, with the wall-clock bridge if asked, then report failures."""
        with self._wallclock_bridge():
            result = fn(*args, **kwargs)
        if self._errors:
            errors, self._errors = self._errors, []
            raise BackgroundTaskError(errors) from errors[0]
        return result

    def _run_task(self, coro: Awaitable[T]) -> asyncio.Task[T]:
        task = self.loop.create_task(_as_coroutine(coro))
        if not self.loop.run_task(task):
            task.cancel()
            self.loop.run_task(task)
            raise SimulationStalled(
                f"{getattr(coro, '__qualname__', coro)!s} waits for something that can never happen: "
                "no timer is scheduled and no other task can run (for example a worker with no "
                "max_jobs or timeout and nothing left to do). Start it with run_in_background=True "
                "and advance the clock instead."
            )
        return task

    @contextlib.contextmanager
    def _wallclock_bridge(self) -> Any:
        if not self.wallclock:
            yield
            return
        from freezegun import freeze_time

        freezer = freeze_time(self.now(), tick=False, real_asyncio=True)
        frozen = freezer.start()
        self.loop.on_jump = lambda t: frozen.move_to(to_datetime(t))
        try:
            yield
        finally:
            self.loop.on_jump = None
            freezer.stop()

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        self._errors.append(error if error is not None else SimulationError(context["message"]))


def _duration(
    delta: timedelta | float | None, seconds: float, minutes: float, hours: float, days: float
) -> float:
    total = to_seconds(delta) + seconds + 60 * minutes + 3600 * hours + 86400 * days
    if total < 0 or math.isnan(total):
        raise ValueError(f"cannot advance by a negative or undefined duration ({total!r} s)")
    return total


def _as_coroutine(awaitable: Awaitable[T]) -> Coroutine[Any, Any, T]:
    if isinstance(awaitable, Coroutine):
        return awaitable

    async def wait() -> T:
        return await awaitable

    return wait()
