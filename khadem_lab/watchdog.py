"""The stall watchdog: notices when virtual time stands still, says why, and gets the loop moving.

Virtual time moves only when every task on the simulation's loop is waiting. Code that never
waits, or that waits without ever letting time move, holds the whole simulation at one instant:

* a job attempt that loops on ``await asyncio.sleep(0)`` (it yields, but time cannot move);
* a job attempt that never yields at all (``while True: pass``, or long blocking work);
* a job that fails at once and is retried with a zero delay, over and over;
* any other task that spins at one instant.

While a :class:`~khadem_lab.simulation.Simulation` call runs, a :class:`Watchdog` thread samples
the loop a few times a second. Once virtual time has stood still for ``stall_timeout`` seconds of
real time (time held by real I/O does not count), it names the culprit and acts:

* a runaway attempt is stopped: cancelled at its next ``await``, or, if it never yields,
  interrupted in its own code (an asynchronous exception, as Ctrl-C interrupts the main thread).
  The run path turns either into a failed attempt (:class:`~khadem_lab.errors.JobStalledError`),
  like a timeout;
* a job retried with zero delay at one instant is dead-lettered at its next failure;
* a task that spins outside any job is cancelled.

The loop then stops at that virtual instant and the call raises
:class:`~khadem_lab.errors.LivelockError` naming what was stopped; the simulation stays usable.
The same machinery serves Ctrl-C (:meth:`Watchdog.interrupt`).

Only real time is read here, to measure how long virtual time stood still; nothing is scheduled by
it. This module is part of the clock layer: it knows tasks and the labels that the run path
attaches to them (:class:`Attempt`), not jobs.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .vloop import VirtualTimeLoop

#: How often the watchdog looks at the loop while a call runs (real seconds).
SAMPLE_INTERVAL = 0.05
#: Loop iterations at one instant before "it spins" can be the verdict. A task that yields but
#: never waits runs this many in milliseconds; finite work at one instant (a worker stopping, a
#: few callbacks) runs far fewer, however long a loaded machine makes them take in real time.
MIN_SPINS = 1000

_PACKAGE_DIR = os.path.dirname(__file__)
_STDLIB_DIR = os.path.dirname(os.__file__)  # asyncio, weakref, threading, ...
#: The one frame of this package that Preempted may unwind through: the run path turns it into a
#: failed attempt. Any other frame of ours in the way means "not now" (it could be half done).
_RUN_PATH = ("execution.py", "execute")
_LOOP_STEP = ("vloop.py", "_run_once")  # where VirtualTimeLoop runs each callback (a task's step)


class Attempt(Protocol):
    """What the run path registers for a task while it runs a job attempt (a JobRecord)."""

    id: str
    attempts: int

    def describe(self) -> str:
        """The job and attempt, for a person: ``"Flaky (job 3, attempt 2)"``."""


class Attempts:
    """The job attempts running on one loop, kept by the run path for the watchdog: which task
    runs which attempt, and how many attempts have started and jobs were stored (progress at one
    instant: a cell that dispatches job after job is working, not stalled)."""

    __slots__ = ("running", "started", "stored")

    def __init__(self) -> None:
        self.running: dict[asyncio.Task[Any], Attempt] = {}
        self.started = 0
        self.stored = 0

    @property
    def progress(self) -> int:
        """Grows whenever an attempt starts or a job is stored."""
        return self.started + self.stored


class Preempted(BaseException):
    """Raised inside code that never yields, to stop it (asynchronously, by the watchdog).

    A BaseException, so that the ``except Exception`` of user code does not swallow it; the run
    path turns it into a failed attempt."""


@dataclass
class Stall:
    """Why the loop was halted before its horizon, and what was stopped.

    ``kind``: ``"runaway"`` (an attempt held time still), ``"retry"`` (a job retried with zero
    delay at one instant), ``"spin"`` (a task outside any job spun; ``"spin-stopped"`` once the
    loop has cancelled the spinning tasks), ``"interrupt"`` (Ctrl-C).
    Whoever handles the stop appends a sentence to :attr:`stopped`."""

    kind: str
    at: float  # the virtual instant
    job_id: str | None = None  # the job a "retry" stall is about
    where: str = ""  # file:line where the runaway code was when it was seen
    stopped: list[str] = field(default_factory=list)
    suspects: set[asyncio.Task[Any]] | None = None  # tasks seen ready while a "spin" is stopped

    def is_retry_of(self, job_id: str) -> bool:
        return self.kind == "retry" and self.job_id == job_id


def stall_caused(error: BaseException, stall: Stall) -> bool:
    """True if ``error`` (a CancelledError or :class:`Preempted` caught by the run path) was
    raised to stop code for ``stall``, not an ordinary cancellation."""
    return isinstance(error, Preempted) or bool(error.args and error.args[0] is stall)


class Watchdog:
    """Samples one virtual loop from its own thread while a call runs on the loop's thread."""

    def __init__(self, loop: VirtualTimeLoop, loop_thread: int, stall_timeout: float | None) -> None:
        self.loop = loop
        self.loop_thread = loop_thread
        self.stall_timeout = stall_timeout
        self._active = threading.Event()
        #: Counts the calls watched: a sample taken in a later call than the one being watched
        #: ends that watch (its thread may sleep through the end of one call into the next).
        self._calls = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    @contextmanager
    def watching(self) -> Iterator[None]:
        """Around each call on the loop thread: sample while it runs."""
        if self.stall_timeout is None:
            yield
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="khadem-sim-watchdog", daemon=True)
            self._thread.start()
        self._calls += 1
        self._active.set()
        try:
            yield
        finally:
            self._active.clear()

    def close(self) -> None:
        self._closed = True
        self._active.set()
        if self._thread is not None:
            self._thread.join()

    # -- Ctrl-C ---------------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Stop the loop at the next point where no callback is half done (called from another
        thread, after a KeyboardInterrupt there). Code that never yields is preempted."""
        loop = self.loop
        if loop.stall is None or loop.stall.kind != "interrupt":
            loop.stall = Stall("interrupt", loop.time())
        if not loop.is_closed():
            loop.call_soon_threadsafe(_nothing)  # wake a real select()
        self.preempt_current(loop.stall)

    # -- sampling ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._active.wait()
            if self._closed:
                return
            self._watch_one_call()

    def _watch_one_call(self) -> None:
        loop = self.loop
        timeout = self.stall_timeout
        assert timeout is not None
        call = self._calls  # what is seen below is about this call only
        vnow, spins = loop._vnow, loop._spins
        spins_since = spins  # the loop's iteration count when time last moved
        since = time.monotonic()
        first_seen: dict[tuple[int, int, int], float] = {}  # (task, record, attempt) -> real time
        progress = since  # when attempts were last seen to start or jobs to be stored
        started = loop.attempts.progress
        attempt_range: dict[str, list[int]] = {}  # job id -> [first, last] attempt seen at this instant
        while self._active.is_set() and not self._closed:
            time.sleep(SAMPLE_INTERVAL)
            if self._calls != call:  # slept into another call: watch that one afresh
                return
            now = time.monotonic()
            if loop._vnow != vnow or loop._holds or loop.stall is not None:
                vnow, since, progress, spins_since = loop._vnow, now, now, loop._spins
                first_seen.clear()
                attempt_range.clear()
                continue
            iterating, spins = loop._spins != spins, loop._spins
            fresh = now  # an attempt seen now started after the last sample, or before the watch
            if loop.attempts.progress != started:
                started, progress = loop.attempts.progress, now
            elif not first_seen:
                fresh = since
            for task, attempt in list(loop.attempts.running.items()):
                first_seen.setdefault((id(task), id(attempt), attempt.attempts), fresh)
                seen = attempt_range.setdefault(attempt.id, [attempt.attempts, attempt.attempts])
                seen[1] = max(seen[1], attempt.attempts)
            if now - since < timeout:
                continue
            if self._calls != call:  # the call ended while this sample was taken: no verdict
                return
            repeated = [job for job, (first, last) in attempt_range.items() if last > first]
            # iterating over and over at this instant, not only slowly (a loaded machine)
            spinning = iterating and (spins < spins_since or spins - spins_since >= MIN_SPINS)
            in_user_code = not iterating and self._in_user_code()
            current = asyncio.current_task(loop)
            long_running = [
                (task, attempt)
                for task, attempt in list(loop.attempts.running.items())
                if now - first_seen.get((id(task), id(attempt), attempt.attempts), now) >= timeout
                # yields but is always ready again, or holds the loop in its own code
                and ((spinning and task._fut_waiter is None) or (in_user_code and task is current))  # type: ignore[attr-defined]
            ]
            if repeated:  # one job failing and retried at once, over and over
                loop.stall = Stall("retry", vnow, job_id=repeated[0])
            elif long_running:  # one attempt runs on and on without letting time move
                self._stop_attempt(*long_running[0], iterating)
            elif now - progress < timeout:  # attempts come and go, jobs are stored: work is done
                continue
            elif in_user_code:  # user code outside any job holds the loop inside one callback
                self._stop_stuck()
            elif spinning:  # perhaps a task outside any job that yields but never waits
                loop.stall = Stall("spin", vnow)  # the loop checks which (see _halt)
            else:  # this package's own work (a big batch): it ends by itself
                continue
            if not loop.is_closed():
                loop.call_soon_threadsafe(_nothing)

    def _in_user_code(self) -> bool:
        frame = sys._current_frames().get(self.loop_thread)
        return frame is not None and _preemptible(frame)

    def _stop_attempt(self, task: asyncio.Task[Any], attempt: Attempt, iterating: bool) -> None:
        """Stop a runaway attempt: cancelled at its next await if the loop still cycles (the
        attempt yields), else preempted in its own code (it never yields)."""
        loop = self.loop
        # Cancelled, it is named by the await where the cancellation lands (the same line on every
        # run: the run path reads it from the error); preempted, by where it was stuck.
        where = "" if iterating else self.where_now()
        stall = Stall("runaway", loop._vnow, job_id=attempt.id, where=where)
        loop.stall = stall
        if iterating or not self.preempt_current(stall):
            loop.call_soon_threadsafe(_cancel, loop, task, attempt, stall)

    def _stop_stuck(self) -> None:
        """Code outside any job holds the loop inside one callback: preempt it."""
        loop = self.loop
        task = asyncio.current_task(loop)
        stall = Stall("spin", loop._vnow, where=self.where_now())
        loop.stall = stall
        what = f"task {task.get_name()!r} ({_qualname(task)}" if task is not None else "(a callback"
        where = stall.where or "unknown"
        stall.stopped.append(f"{what}, at {where}) was interrupted: it never let time move")
        self.preempt_current(stall)

    def preempt_current(self, stall: Stall) -> bool:
        """If the loop thread is stuck inside one callback (the loop does not iterate), raise
        :class:`Preempted` in its code as soon as that is user code (not asyncio's or this
        package's: code there cannot be stopped safely at any point). True if raised."""
        loop = self.loop
        spins = loop._spins
        stuck_checks = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and loop.stall is stall and loop.is_running():
            time.sleep(0.002)
            if loop._spins != spins:  # it iterates: callbacks (cancellation, stop) reach it
                return False
            stuck_checks += 1
            frame = sys._current_frames().get(self.loop_thread)
            if stuck_checks >= 5 and frame is not None and _preemptible(frame):
                stall.where = stall.where or _frame_where(frame)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self.loop_thread), ctypes.py_object(Preempted)
                )
                return True
        return False

    def where_now(self) -> str:
        """Where the loop thread's innermost user code is, right now (empty if none)."""
        frame = sys._current_frames().get(self.loop_thread)
        while frame is not None and not _is_user_code(frame):
            frame = frame.f_back
        return _frame_where(frame) if frame is not None else ""


def error_where(error: BaseException) -> str:
    """Where the innermost user code was when ``error`` was raised through it (empty if none)."""
    found = ""
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if _is_user_code(frame):
            found = _place(frame.f_code.co_filename, tb.tb_lineno, frame.f_code.co_name)
        tb = tb.tb_next
    return found


def task_where(task: asyncio.Task[Any]) -> str:
    """Where a suspended task's innermost user code is waiting, as ``file:line in name``."""
    coro: Any = task.get_coro()
    found = ""
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None and _is_user_code(frame):
            found = _frame_where(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return found


def _qualname(task: asyncio.Task[Any]) -> str:
    return str(getattr(task.get_coro(), "__qualname__", task.get_coro()))


def _is_user_code(frame: types.FrameType) -> bool:
    filename = frame.f_code.co_filename
    return not filename.startswith((_STDLIB_DIR, _PACKAGE_DIR, "<frozen"))


def _preemptible(frame: types.FrameType) -> bool:
    """True if raising :class:`Preempted` in ``frame`` (the loop thread's innermost) is safe: it is
    user code, and unwinding up to the task's step crosses no frame of this package but the run
    path's (which handles it)."""
    if not _is_user_code(frame):
        return False
    outer = frame.f_back
    while outer is not None:
        code = outer.f_code
        if code.co_filename.startswith(_PACKAGE_DIR):
            place = (os.path.basename(code.co_filename), code.co_name)
            # The virtual loop runs a task's step itself (Handle._run inlined): as below.
            return place in (_RUN_PATH, _LOOP_STEP)
        if code.co_name == "_run" and code.co_filename.endswith("events.py"):  # the task's step
            return True
        outer = outer.f_back
    return True


def _frame_where(frame: types.FrameType) -> str:
    return _place(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)


def _place(filename: str, line: int | None, name: str) -> str:
    """``file.py:12 in handle``; for code from a notebook cell, as IPython names it in its own
    tracebacks (``Cell In[7], line 12 in handle``), not by the kernel's temporary file name."""
    shell = _ipython_shell()
    cell = getattr(getattr(shell, "compile", None), "_filename_map", {}).get(filename)
    if isinstance(cell, int):
        return f"Cell In[{cell}], line {line} in {name}"
    return f"{os.path.basename(filename)}:{line} in {name}"


def _ipython_shell() -> object | None:
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    return get() if get is not None else None


def _cancel(loop: VirtualTimeLoop, task: asyncio.Task[Any], attempt: Attempt, stall: Stall) -> None:
    """On the loop: cancel ``task`` if it is still in the runaway ``attempt``."""
    if loop.stall is stall and loop.attempts.running.get(task) is attempt and not task.done():
        task.cancel(stall)  # the message is the Stall itself (stall_caused checks it)


def _nothing() -> None:
    pass
