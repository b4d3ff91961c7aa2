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
import logging
import math
import os
import random
import sys
import threading
import time
import types
import warnings
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, TypeVar

from . import wallclock as wallclock_bridge
from .clock import VirtualClock, to_datetime, to_seconds, to_timestamp
from .errors import BackgroundTaskError, LivelockError, SimulationError, SimulationStalled
from .vloop import LAST_TIME, VirtualTimeLoop
from .watchdog import Preempted, Stall, Watchdog

log = logging.getLogger(__name__)

T = TypeVar("T")

#: For each place at the top level of a cell or script that made a Simulation: the last one made
#: there and the frame (the run of the cell) that made it.
_MADE_AT: dict[tuple[str, int], tuple[weakref.ref[Simulation], types.FrameType]] = {}
_PACKAGE_DIR = os.path.dirname(__file__)


class SimulationReplacedWarning(UserWarning):
    """Warned when re-running a cell closes the Simulation the same line made before."""


#: Where a simulation starts unless told otherwise: a fixed date, so output is reproducible.
DEFAULT_START = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)


class Simulation:
    """A virtual clock and the loop it drives.

    ``start`` is the simulated start date (default :data:`DEFAULT_START`); ``seed`` seeds
    :attr:`rng`, the random generator scenarios should draw from so that runs repeat exactly.
    With ``wallclock=True``, ``datetime.now()`` and ``time.time()`` called on the simulation's own
    thread (job code) return virtual time; every other thread (the kernel, the learner's own tasks)
    keeps seeing real time (see :mod:`khadem_lab.wallclock`).

    ``tz`` is the time zone in which :meth:`now`, the return values of the advances and the reprs
    show virtual time (default: ``start``'s, else UTC); inside, time is UTC seconds.
    ``stall_timeout``: how long (real seconds) virtual time may stand still before the
    watchdog stops what holds it (a job that never waits, a zero-delay retry loop) and the call
    raises :class:`~khadem_lab.errors.LivelockError`; None switches the watchdog off. See
    :mod:`khadem_lab.watchdog`.
    """

    def __init__(
        self,
        start: datetime = DEFAULT_START,
        *,
        seed: int = 0,
        tz: tzinfo | None = None,
        stall_timeout: float | None = 1.0,
        livelock_budget: int = 1_000_000,
        wallclock: bool = False,
    ) -> None:
        if stall_timeout is not None and not stall_timeout > 0:
            raise ValueError(f"stall_timeout must be None or a number of seconds > 0, got {stall_timeout!r}")
        self.start = start if start.tzinfo else start.replace(tzinfo=UTC)
        self.tz: tzinfo = tz or self.start.tzinfo or UTC
        self.loop = VirtualTimeLoop(to_timestamp(self.start), livelock_budget=livelock_budget)
        self.loop.set_exception_handler(self._on_loop_error)
        self.clock = VirtualClock(self)
        self.rng = random.Random(seed)
        self.seed = seed
        self.wallclock = wallclock
        self._errors: list[BaseException] = []
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="khadem-sim")
        self._thread_id = self._pool.submit(threading.get_ident).result()
        self._watchdog = Watchdog(self.loop, self._thread_id, stall_timeout)
        # A call interrupted by Ctrl-C whose loop thread could not be stopped (stuck in C code)
        self._stuck: concurrent.futures.Future[Any] | None = None
        self._closed = False
        self._detach_wallclock = (
            wallclock_bridge.attach(self._thread_id, self.loop.time) if wallclock else None
        )
        self._replace_the_one_made_here_before()

    # -- reading time ---------------------------------------------------------------------------
    def now(self) -> datetime:
        """Virtual now, as an aware datetime in the simulation's time zone."""
        return to_datetime(self.loop.time()).astimezone(self.tz)

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
        target = self._target(_duration(delta, seconds, minutes, hours, days))
        self._call(self.loop.run_until, target)
        return self.now()

    def _target(self, duration: float) -> float:
        """Where an advance by ``duration`` seconds ends; refused (nothing run) past the calendar."""
        target = self.time() + duration
        if target > LAST_TIME:
            raise ValueError(
                f"advancing {duration:,.0f} s from {self.now():%Y-%m-%d} would take the clock past "
                "9999-12-31 23:59:59 UTC, the last moment a datetime can hold; nothing was run. "
                "Advance by less (run_until_idle() runs everything there is to run)."
            )
        return target

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
        target = self._target(_duration(delta, seconds, minutes, hours, days))
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
        """Done-callback for background tasks: stop the loop at this virtual instant, so that the
        call running it raises the error there (a task stopped by the watchdog is reported by
        the stall instead)."""
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and not isinstance(error, Preempted):
            self._errors.append(error)
            self.loop.stop()

    # -- closing ------------------------------------------------------------------------------------
    def close(self) -> None:
        """Cancel what still runs, close the loop and the helper thread. Idempotent."""
        if self._closed:
            return
        self._check_not_busy()
        try:
            self._pool.submit(self._shutdown).result()
        finally:
            self._pool.shutdown(wait=True)
            self._watchdog.close()
            self._closed = True
            if self._detach_wallclock is not None:
                self._detach_wallclock()

    def _replace_the_one_made_here_before(self) -> None:
        """Re-running a notebook cell that makes a Simulation closes the one the cell made
        before (its jobs could never run again, and its thread would linger), with a warning.

        Only for a Simulation made at the top level of a cell or script (not in a function or a
        comprehension), and only when made by an earlier run of that code: a loop at the top
        level of one cell makes several that all stay open."""
        frame = sys._getframe(1)
        while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            frame = frame.f_back
        if frame.f_code.co_name != "<module>":
            return
        site = (frame.f_code.co_filename, frame.f_lineno)
        before = _MADE_AT.get(site)
        _MADE_AT[site] = (weakref.ref(self), frame)
        if before is None:
            return
        old, old_frame = before[0](), before[1]
        if old is None or old._closed or old_frame is frame:
            return
        old.close()
        warnings.warn(
            f"this line made a Simulation before (now at {old.now():%Y-%m-%d %H:%M:%S}); it was "
            "closed, as its cell was run again. To keep several simulations open, make them on "
            "different lines; close one yourself with sim.close() or `with Simulation() as sim:`",
            SimulationReplacedWarning,
            stacklevel=3,
        )

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

    @property
    def stall_timeout(self) -> float | None:
        """Real seconds virtual time may stand still before the watchdog steps in (None: off)."""
        return self._watchdog.stall_timeout

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
        self._check_not_busy()

    def _check_not_busy(self) -> None:
        """A call interrupted by Ctrl-C whose thread is still stuck (in code that cannot be
        preempted, such as a long C call) would block every later call: say so instead."""
        stuck = self._stuck
        if stuck is not None and not stuck.done():
            raise SimulationError(
                f"the simulation is still stopping after an interrupt: its thread is busy in "
                f"{self._watchdog.where_now() or 'code that cannot be interrupted'}. Try again when "
                "that returns, or restart the kernel if it never does"
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
        """Run ``fn`` on the loop thread, blocking; job ``print()`` output lands in the caller.

        Ctrl-C (KeyboardInterrupt) stops the loop where nothing is half done, preempting code that
        never yields, and is raised once the loop has stopped: the simulation stays usable."""
        self._check_callable()
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            try:
                future = self._pool.submit(self._guarded, fn, *args, **kwargs)
                try:
                    try:
                        result: T = future.result()
                    except KeyboardInterrupt:
                        if future.done():
                            raise
                        self._watchdog.interrupt()
                        result = self._wait_after_interrupt(future)
                except (SimulationError, KeyboardInterrupt) as exc:  # without the thread's frames
                    raise exc.with_traceback(None) from exc.__cause__
            finally:
                captured = buffer.getvalue()
        if captured:
            sys.stdout.write(captured)
        return result

    def _wait_after_interrupt(self, future: concurrent.futures.Future[T]) -> T:
        deadline = _real_time() + 5.0
        while True:
            try:
                return future.result(timeout=max(0.0, deadline - _real_time()))
            except KeyboardInterrupt:
                if future.done():  # the call's own outcome: the loop stopped for the interrupt
                    raise
                self._watchdog.interrupt()  # pressed again: keep stopping, the thread is not free
            except concurrent.futures.TimeoutError:
                self._stuck = future
                raise KeyboardInterrupt(
                    "the simulation was interrupted, but its thread is still busy in "
                    f"{self._watchdog.where_now() or 'code that cannot be interrupted'}; it stops "
                    "when that returns"
                ) from None

    async def _call_async(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the loop thread while the caller's loop (a kernel's) keeps running.

        The caller's loop is woken a few times a second meanwhile: ipykernel turns Ctrl-C into a
        cancellation of the cell, delivered only when its loop wakes. A cancelled call stops the
        simulation where nothing is half done before it returns."""
        self._check_callable()
        future = self._pool.submit(self._guarded, fn, *args, **kwargs)
        outcome: asyncio.Future[T] = asyncio.wrap_future(future)
        try:
            while not outcome.done():
                await asyncio.wait({outcome}, timeout=_ASYNC_POLL)
        except asyncio.CancelledError:
            self._watchdog.interrupt()
            deadline = _real_time() + 5.0
            while not outcome.done() and _real_time() < deadline:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({outcome}, timeout=_ASYNC_POLL)
            if not outcome.done():
                self._stuck = future
            elif isinstance(outcome.exception(), KeyboardInterrupt):
                raise asyncio.CancelledError(str(outcome.exception())) from None
            raise
        try:
            return outcome.result()
        except (SimulationError, KeyboardInterrupt) as exc:
            raise exc.with_traceback(None) from exc.__cause__

    def _guarded(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """On the loop thread: run under the watchdog, then raise what stopped it early: a stall
        (LivelockError), Ctrl-C (KeyboardInterrupt), a failed background task."""
        with self._watchdog.watching():
            try:
                result = fn(*args, **kwargs)
            except Preempted:  # arrived between two callbacks: nothing was half done
                if self.loop.stall is None:
                    raise
        stall, self.loop.stall = self.loop.stall, None
        if stall is not None and not (stall.kind == "spin" and not stall.stopped):
            # (a spin judged as the call ended, and never confirmed: nothing spins any more)
            raise self._stall_error(stall)
        if self._errors:
            errors, self._errors = self._errors, []
            raise BackgroundTaskError(errors) from errors[0]
        return result

    def _stall_error(self, stall: Stall) -> BaseException:
        when = to_datetime(stall.at).astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S")
        stopped = "".join(f"\n- {line}" for line in stall.stopped)
        if stall.kind == "interrupt":
            return KeyboardInterrupt(f"simulation interrupted at {when} (virtual){stopped}")
        timeout = self._watchdog.stall_timeout
        return LivelockError(
            f"virtual time stood still at {when} for more than stall_timeout={timeout:g} s of real "
            "time, so the watchdog stopped what held it:"
            f"{stopped or chr(10) + '- nothing could be stopped; a task keeps time from moving'}\n"
            "The simulation can go on. If this was real work that takes long, raise "
            "Simulation(stall_timeout=...) or set it to None."
        )

    def _run_task(self, coro: Awaitable[T]) -> asyncio.Task[T]:
        task = self.loop.create_task(_as_coroutine(coro))
        if not self.loop.run_task(task):
            task.cancel()
            if self.loop.quiescent:
                self.loop.run_task(task)
                raise SimulationStalled(
                    f"{getattr(coro, '__qualname__', coro)!s} waits for something that can never "
                    "happen: no timer is scheduled and no other task can run (for example a worker "
                    "with no max_jobs or timeout and nothing left to do). Start it with "
                    "run_in_background=True and advance the clock instead."
                )
            # Stopped early (a stall, Ctrl-C, a failed background task): raised by _guarded.
        return task

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, Preempted):
            return  # reported by the stall
        if error is None:  # a notice (a library's "Unclosed ... client"), not an error of a task
            log.warning("on the simulation's loop: %s", context.get("message", context))
            return
        self._errors.append(error)
        self.loop.stop()


def _duration(
    delta: timedelta | float | None, seconds: float, minutes: float, hours: float, days: float
) -> float:
    total = to_seconds(delta) + seconds + 60 * minutes + 3600 * hours + 86400 * days
    if total < 0 or math.isnan(total):
        raise ValueError(f"cannot advance by a negative or undefined duration ({total!r} s)")
    return total


#: How often a caller's loop wakes while it awaits a call on the simulation's thread (seconds).
_ASYNC_POLL = 0.1


def _real_time() -> float:
    """Real seconds, to bound how long a call waits for the loop thread after Ctrl-C."""
    return time.monotonic()


def _as_coroutine(awaitable: Awaitable[T]) -> Coroutine[Any, Any, T]:
    if isinstance(awaitable, Coroutine):
        return awaitable

    async def wait() -> T:
        return await awaitable

    return wait()
