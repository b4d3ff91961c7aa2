"""An asyncio event loop whose clock is virtual: it jumps to the next timer instead of waiting.

asyncio asks its selector to block (``select(timeout)`` with a non-zero timeout) exactly when no
callback is ready. :class:`VirtualTimeLoop` wraps that call: it polls real I/O without blocking and,
if nothing is in flight, moves virtual time straight to the earliest timer, never past a horizon.
So ``asyncio.sleep``, ``asyncio.wait_for`` and ``asyncio.timeout`` keep their real semantics and run
on virtual time. The same hook is used by looptime and aiotools; trio's ``MockClock`` with autojump
is the model of the idea.

Time is the absolute number of seconds since the Unix epoch, so a job due at ``t`` is woken by a
timer at exactly ``t`` (no conversion, no rounding between the clock and the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
import math
from asyncio import format_helpers
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .errors import LivelockError
from .watchdog import Attempts, task_where

if TYPE_CHECKING:
    from .watchdog import Stall

# Timers within this many seconds of "now" count as due. asyncio's default (the monotonic clock's
# resolution, 1 ns) is below the float spacing of epoch seconds (~0.24 us), so a timer due exactly
# now would never fire.
CLOCK_RESOLUTION = 1e-6
# From 2**33 s on (the year 2242) epoch seconds are spaced more than 1 us apart, and from 2**34 s
# (2514) `now + 1e-6` rounds back to `now`, so a timer due exactly now would never count as due
# and the loop would spin until LivelockError (a retry backoff with no ceiling gets there). There
# the resolution is the float spacing itself (see VirtualTimeLoop._coarser): below 2**34 s every
# timer counts as due exactly as before.
COARSE_FROM = 2.0**33
#: 9999-12-31 23:59:59 UTC, the last second a datetime can hold: the clock never goes past it
#: (a timer due later never fires; ``Simulation.advance`` refuses to go there).
LAST_TIME = 253_402_300_799.0

# asyncio's own thresholds (base_events): with more than 100 timers of which more than half are
# cancelled, the heap is rebuilt without them. Kept identical, so timers fire in the same order.
_MIN_SCHEDULED_TIMER_HANDLES = 100
_MIN_CANCELLED_TIMER_HANDLES_FRACTION = 0.5

_new_handle: Callable[[type], Any] = object.__new__  # a handle without __init__: its slots set in place
_copy_context = contextvars.copy_context
_heappush = heapq.heappush
_heappop = heapq.heappop
# The timer callback of every asyncio.sleep(delay > 0): set the sleeper's future, unless cancelled.
_wake_sleeper = asyncio.futures._set_result_unless_cancelled  # type: ignore[attr-defined]


def _callback_failed(handle: Any, exc: BaseException) -> None:
    """What ``Handle._run`` does when its callback raises: hand it to the loop's exception handler."""
    callback = format_helpers._format_callback_source(handle._callback, handle._args)
    context: dict[str, Any] = {
        "message": f"Exception in callback {callback}",
        "exception": exc,
        "handle": handle,
    }
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)


class _Timer(asyncio.TimerHandle):
    """asyncio's TimerHandle, built and cancelled without its debug-mode checks.

    Made by :meth:`VirtualTimeLoop.call_at` (each ``asyncio.sleep`` makes one and cancels it in its
    ``finally``). Same slots, same ordering (by ``_when`` only, ties as asyncio's heap leaves them).
    In the loop's heap it sits in a ``(when, timer)`` pair (see :meth:`VirtualTimeLoop.call_at`).
    Equal and hashed by identity (a timer is one scheduled call, not a value): a tie between two
    pairs compares the timers with ``==`` (False) and then ``<`` (False, same ``_when``), exactly
    the outcome asyncio's heap of handles gets. Part of the loop's hot path (figures at
    :meth:`VirtualTimeLoop.call_soon`)."""

    __slots__ = ()
    # asyncio's slots, typed for mypy (annotations only: no class attributes).
    _when: float
    _scheduled: bool
    _cancelled: bool
    _loop: Any
    _callback: Any
    _args: Any
    _repr: str | None

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __lt__(self, other: _Timer) -> bool:  # type: ignore[override]
        return self._when < other._when  # only timers share the heap: no isinstance check

    def cancel(self) -> None:
        if not self._cancelled:
            loop = self._loop
            if self._scheduled:
                loop._timer_cancelled_count += 1
            self._cancelled = True
            if loop._debug:
                self._repr = repr(self)
            self._callback = None
            self._args = None


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """Selector event loop on virtual time. Driven by :class:`~khadem_lab.simulation.Simulation`."""

    # asyncio's private state used on the hot path, typed for mypy (annotations only).
    _ready: Any
    _scheduled: Any
    _timer_cancelled_count: int
    _stopping: bool
    _debug: bool
    _closed: bool

    def __init__(self, start: float, *, livelock_budget: int = 1_000_000) -> None:
        super().__init__()
        self._vnow = float(start)
        self._clock_resolution = CLOCK_RESOLUTION
        #: From this virtual time on, 1 us is below the float spacing of epoch seconds: the
        #: resolution must grow with the time (see :meth:`_coarser`).
        self._coarse_from = COARSE_FROM
        if self._vnow >= COARSE_FROM:
            self._coarser(self._vnow)
        self._horizon = LAST_TIME  # where the clock may go in this run (see run_until)
        self._open_ended = True  # the run has no horizon of its own: the clock stays at its last event
        self._jump_to_horizon = True
        self._holds = 0
        self._real_select = self._selector.select  # type: ignore[attr-defined]
        self._selector.select = self._virtual_select  # type: ignore[attr-defined]
        self._watched: dict[Any, Any] = self._selector._fd_to_key  # type: ignore[attr-defined]
        self.livelock_budget = livelock_budget
        self._spins = 0
        self.quiescent = False
        self.on_jump: Callable[[float], None] | None = None
        #: The job attempt each task is running (set by the run path), for the stall watchdog.
        self.attempts = Attempts()
        #: Timers that only look for work that may never come (a shared queue's poll): when they
        #: are all that is left, the loop is idle (see :meth:`call_idle_at`).
        self._idle_timers: set[asyncio.TimerHandle] = set()
        #: Set (by the watchdog, or Ctrl-C) when the loop must stop before its horizon.
        self.stall: Stall | None = None

    def set_debug(self, enabled: bool) -> None:
        if bool(enabled) != getattr(self, "_debug", False):
            # Debug mode runs asyncio's own call_at and _run_once, whose heap holds bare handles;
            # this loop's own heap holds (when, handle) pairs (a C comparison, not __lt__). Same
            # positions either way: each is a valid heap under the same comparisons.
            if enabled:
                self._scheduled = [entry[1] for entry in self._scheduled]
            else:
                self._scheduled = [(handle._when, handle) for handle in self._scheduled]
        super().set_debug(enabled)
        # The C Future asks get_debug() each time one is made (every asyncio.sleep, every idle
        # wait): answered by a C callable, without a Python frame.
        self.get_debug = itertools.repeat(enabled).__next__  # type: ignore[method-assign]

    # -- time -------------------------------------------------------------------------------
    def time(self) -> float:
        return self._vnow

    def _set_time(self, when: float) -> None:
        if when > self._vnow:
            self._vnow = when
            if when >= self._coarse_from:
                self._coarser(when)
            self._spins = 0
            if self.on_jump is not None:
                self.on_jump(when)

    def _coarser(self, when: float) -> None:
        """Time has reached ``when``, where 1 us is at or below the float spacing of epoch seconds:
        from here to the next power of two (where the spacing doubles), a timer counts as due when
        it is due at ``when`` exactly (the resolution is that spacing)."""
        self._clock_resolution = max(CLOCK_RESOLUTION, math.ulp(when))
        self._coarse_from = math.ldexp(1.0, math.frexp(when)[1])

    # -- the hot path -----------------------------------------------------------------------
    # asyncio's call_soon / call_at / call_later / _run_once, streamlined for a loop whose clock is
    # virtual: no debug checks (with loop.set_debug(True) asyncio's own versions run), no selector
    # call while nothing real can be pending, handles built in place. Same handles, same FIFO ready
    # queue, same timer heap, same order of everything, so the same event history.
    # Loop-thread CPU for 100k customers (bench/README.md, M/M/c): bench/asyncio_floor.py
    # 1.50 -> 0.90 s, bench/mmc.py 2.99 -> 2.38 s.
    def call_soon(  # type: ignore[override]
        self, callback: Callable[..., object], *args: Any, context: contextvars.Context | None = None
    ) -> asyncio.Handle:
        if self._debug or self._closed:
            return super().call_soon(callback, *args, context=context)
        handle = _new_handle(asyncio.Handle)
        handle._callback = callback
        handle._args = args
        handle._cancelled = False
        handle._loop = self
        handle._source_traceback = None
        handle._repr = None
        handle._context = _copy_context() if context is None else context
        self._ready.append(handle)
        return handle  # type: ignore[no-any-return]

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        if self._debug or self._closed or when is None:
            return super().call_at(when, callback, *args, context=context)
        timer = _new_handle(_Timer)
        timer._callback = callback
        timer._args = args
        timer._cancelled = False
        timer._loop = self
        timer._source_traceback = None
        timer._repr = None
        timer._context = _copy_context() if context is None else context
        timer._when = when
        timer._scheduled = True
        _heappush(self._scheduled, (when, timer))
        return timer  # type: ignore[no-any-return]

    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        if delay is None or self._debug or self._closed:
            return super().call_later(delay, callback, *args, context=context)
        timer = _new_handle(_Timer)  # call_at's body (asyncio.sleep comes this way): one call less
        timer._callback = callback
        timer._args = args
        timer._cancelled = False
        timer._loop = self
        timer._source_traceback = None
        timer._repr = None
        timer._context = _copy_context() if context is None else context
        timer._when = when = self._vnow + delay
        timer._scheduled = True
        _heappush(self._scheduled, (when, timer))
        return timer  # type: ignore[no-any-return]

    def _run_once(self) -> None:
        """asyncio's loop iteration, repeated here until the loop is asked to stop (``run_forever``
        stops after this returns, exactly as after its own ``_run_once``).

        Per iteration, as asyncio: drop cancelled timers at the head of the heap; if callbacks are
        ready, count a spin (see :meth:`_virtual_select`), else poll real I/O or move time to the
        next timer; make the timers due now ready; run the callbacks that were ready then (those
        they schedule run at the next iteration)."""
        if self._debug:  # asyncio's own, with its slow-callback log
            super()._run_once()  # type: ignore[misc]
            return
        ready = self._ready
        popleft = ready.popleft
        resolution = self._clock_resolution  # both change only as time passes 2**33 s, 2**34 s ...
        coarse_from = self._coarse_from  # (read again after any call that may move the clock)
        while True:
            scheduled = self._scheduled
            count = len(scheduled)
            if (
                count > _MIN_SCHEDULED_TIMER_HANDLES
                and self._timer_cancelled_count / count > _MIN_CANCELLED_TIMER_HANDLES_FRACTION
            ):
                kept = []
                for entry in scheduled:
                    if entry[1]._cancelled:
                        entry[1]._scheduled = False
                    else:
                        kept.append(entry)
                heapq.heapify(kept)
                self._scheduled = scheduled = kept
                self._timer_cancelled_count = 0
            else:
                while scheduled and scheduled[0][1]._cancelled:
                    self._timer_cancelled_count -= 1
                    _heappop(scheduled)[1]._scheduled = False
            if ready or self._stopping:
                timeout: float | None = 0
            elif scheduled:
                timeout = max(0.0, scheduled[0][0] - self._vnow)
            else:
                timeout = None
            if self._holds or self.stall is not None or len(self._watched) > 1:
                events = self._virtual_select(timeout)  # real I/O, or a stall: the general case
                resolution, coarse_from = self._clock_resolution, self._coarse_from
                if events:
                    self._process_events(events)  # type: ignore[attr-defined]
                    del events  # no reference kept (as asyncio: cycles after an error)
            elif timeout == 0:
                # What _virtual_select does with callbacks ready and nothing held, inlined.
                self._spins += 1
                if self._spins > self.livelock_budget:
                    raise self._livelock()
            elif timeout is not None and not self._idle_timers and scheduled[0][0] <= self._horizon:
                # Nothing ready, nothing real to wait for: jump to the next timer (_set_time).
                when = scheduled[0][0]
                if when > self._vnow:
                    self._vnow = when
                    if when >= coarse_from:
                        self._coarser(when)
                        resolution, coarse_from = self._clock_resolution, self._coarse_from
                    self._spins = 0
                    if self.on_jump is not None:
                        self.on_jump(when)
            else:
                events = self._virtual_select(timeout)
                resolution, coarse_from = self._clock_resolution, self._coarse_from
                if events:
                    self._process_events(events)  # type: ignore[attr-defined]
                    events = None
            end_time = self._vnow + resolution
            while scheduled and scheduled[0][0] < end_time:
                handle = _heappop(scheduled)[1]
                handle._scheduled = False
                ready.append(handle)
            for _ in range(len(ready)):
                handle = popleft()
                if handle._cancelled:
                    continue
                # An asyncio.sleep is over. bench/mmc.py, loop-thread CPU for 100k customers:
                # 2.26 -> 2.10 s (bench/README.md, M/M/c).
                callback = handle._callback
                if callback is _wake_sleeper:
                    future = handle._args[0]
                    if not future.done():  # _set_result_unless_cancelled, without its two frames
                        future.set_result(handle._args[1])
                        continue
                # Handle._run, inlined (one Python frame less per callback).
                try:
                    handle._context.run(callback, *handle._args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    _callback_failed(handle, exc)
            handle = callback = None  # no reference kept (asyncio's note: it breaks cycles after an error)
            if self._stopping:
                return

    # -- idle timers ----------------------------------------------------------------------------
    def call_idle_at(self, when: float, callback: Callable[..., object], *args: Any) -> asyncio.TimerHandle:
        """Like ``call_at``, for a timer that only polls for work that may never come (an idle
        worker on a queue shared between processes). When only such timers are left, the loop
        counts as idle: ``run_until_idle`` returns and a coroutine waiting on nothing else is
        stalled, instead of polling on forever in virtual time."""
        handle = self.call_at(when, callback, *args)
        self._idle_timers.add(handle)
        return handle

    def end_idle(self) -> None:
        """The pending idle timers are work after all (a job was stored where they look)."""
        self._idle_timers.clear()

    def _timers(self) -> Iterator[asyncio.TimerHandle]:
        """The scheduled timers, heap order (pairs in this loop's heap, bare handles in debug mode)."""
        for entry in self._scheduled:
            yield entry[1] if type(entry) is tuple else entry

    def _next_work(self) -> float:
        """When the earliest timer that is not an idle poll is due (inf: none)."""
        scheduled = self._scheduled
        if not scheduled:
            return math.inf
        head = next(self._timers())
        if not self._idle_timers or head not in self._idle_timers:
            return float(head._when)  # type: ignore[attr-defined]
        live = {h for h in self._timers() if not h.cancelled()}
        self._idle_timers = {h for h in self._idle_timers if h in live}
        work = [h._when for h in live if h not in self._idle_timers]  # type: ignore[attr-defined]
        return float(min(work)) if work else math.inf

    # -- real I/O holds the clock ---------------------------------------------------------
    @contextlib.contextmanager
    def io_hold(self) -> Iterator[None]:
        """Hold virtual time still while real I/O (a socket round trip) is in flight."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., Any], *args: Any
    ) -> asyncio.Future[Any]:
        """Thread work (``asyncio.to_thread`` too) holds virtual time until it finishes."""
        self._holds += 1
        future = super().run_in_executor(executor, func, *args)
        future.add_done_callback(self._release_hold)
        return future

    def _release_hold(self, _future: object) -> None:
        self._holds -= 1

    # -- the hook -----------------------------------------------------------------------------
    def _virtual_select(self, timeout: float | None) -> list[Any]:
        events: list[Any] = []
        # Poll real I/O only when some could be pending: a hold is taken, or a file descriptor
        # other than the loop's own wake-up pipe is watched. Otherwise there is nothing to poll.
        # (With callbacks ready and nothing held, I/O waits for the ready queue to drain; it
        # cannot move virtual time, so it loses nothing.)
        if self._holds or (timeout != 0 and len(self._watched) > 1):
            events = self._real_select(0)
            if events:
                return events
        if self.stall is not None and self._halt(timeout):
            return events
        if timeout == 0:  # callbacks are ready: count spins at this instant
            self._spins += 1
            if self._spins > self.livelock_budget:
                raise self._livelock()
            return events
        if self._holds:  # real I/O in flight: wait for it in real time, virtual time stays
            result: list[Any] = self._real_select(0.05)
            return result
        next_when = self._next_work()
        if next_when > self._horizon:
            # Work left beyond the horizon: time has run up to it. Nothing left at all (or only
            # past the calendar's end): idle; the clock goes to the horizon only if asked
            # (advance), not for run_until_idle.
            if not self._open_ended and (self._jump_to_horizon or next_when != math.inf):
                self._set_time(self._horizon)
            self.quiescent = True
            self.stop()
            return events
        self._set_time(next(self._timers())._when)  # type: ignore[attr-defined]  # (perhaps a poll)
        return events

    def _livelock(self) -> LivelockError:
        self._spins = 0
        return LivelockError(
            f"{self.livelock_budget:,} loop iterations ran at one virtual instant without "
            "time moving: a task loops on asyncio.sleep(0), or a job fails and is retried "
            "with zero delay forever. Give retries a delay (or raise the budget with "
            "Simulation(livelock_budget=...)) and make loops wait on the clock."
        )

    def _halt(self, timeout: float | None) -> bool:
        """A stall is pending: stop the loop where nothing is half done. True if stopping now.

        Ctrl-C stops at once (between callbacks). A stopped attempt or job is given the rest of
        this instant to settle (its failure is recorded), and the loop stops before time would
        move. A task spinning outside any job is cancelled once it is seen ready twice."""
        stall = self.stall
        assert stall is not None
        if stall.kind == "spin" and timeout != 0 and not stall.stopped:
            # Judged spinning, but nothing is ready now: the loop waits, so nothing spins (finite
            # work at one instant that a loaded machine made slow). Not a stall after all.
            self.stall = None
            return False
        if stall.kind == "interrupt" or timeout != 0:
            stall.at = self._vnow  # where it stops (Ctrl-C comes from another thread, a bit earlier)
            self.stop()
            return True
        if stall.kind == "spin":
            ready = {t for t in asyncio.all_tasks(self) if t._fut_waiter is None}  # type: ignore[attr-defined]
            if stall.suspects is None:
                stall.suspects = ready
                return False
            spinning = stall.suspects & ready  # ready at two loop iterations in a row
            if not spinning:  # many tasks doing work at one instant: not a spin after all
                self.stall = None
                return False
            for task in spinning:
                stall.where = stall.where or task_where(task)
                if task not in self.attempts.running:
                    stall.stopped.append(
                        f"task {task.get_name()!r} ({task.get_coro().__qualname__}, at "  # type: ignore[union-attr]
                        f"{task_where(task) or 'unknown'}) was cancelled"
                    )
                task.cancel(stall)  # the message is the Stall (stall_caused checks it)
            stall.kind = "spin-stopped"
        return False

    # -- driving it ---------------------------------------------------------------------------
    def run_until(self, horizon: float, *, jump_to_horizon: bool = True) -> None:
        """Run everything due up to ``horizon`` in time order; stop once quiescent there.

        With ``jump_to_horizon`` the clock ends exactly at ``horizon``; without, it stays at the
        last thing that ran (``run_until_idle``). A horizon past :data:`LAST_TIME` (``math.inf``:
        none) leaves the run open-ended: the clock stays at the last thing that ran, and a timer
        due past the calendar's end never fires.
        """
        self._horizon = min(horizon, LAST_TIME)
        self._open_ended = horizon > LAST_TIME
        self._jump_to_horizon = jump_to_horizon
        self.quiescent = False
        try:
            self.run_forever()
        finally:
            self._horizon = LAST_TIME
            self._open_ended = True
            self._jump_to_horizon = True

    def run_task(self, task: asyncio.Future[Any]) -> bool:
        """Run until ``task`` is done, time moving as needed. False if it stalled instead."""
        task.add_done_callback(self._stop_on_done)
        self.quiescent = False
        self._horizon = LAST_TIME
        self._open_ended = True
        self._jump_to_horizon = False
        try:
            self.run_forever()
        finally:
            self._jump_to_horizon = True
            task.remove_done_callback(self._stop_on_done)
        return task.done()

    def _stop_on_done(self, _task: object) -> None:
        self.stop()
