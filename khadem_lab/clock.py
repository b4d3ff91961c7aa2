"""Clocks: the only source of "now" and the only way to wait in khadem_lab.

Internally time is a float of seconds since the Unix epoch (UTC). Aware UTC ``datetime`` values
appear only at the edges (``now()``, stats, frames). Nothing else in the package reads the wall
clock or sleeps for scheduling.

* :class:`SystemClock` is real time, for real queues.
* :class:`VirtualClock` is simulated time; it belongs to a :class:`~khadem_lab.simulation.Simulation`
  whose event loop moves only when told, so ``await asyncio.sleep(3600)`` inside a job takes an hour
  of virtual time and microseconds of real time.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import operator
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from .simulation import Simulation
    from .watchdog import Stall

T = TypeVar("T")
_VNOW = operator.attrgetter("_vnow")  # VirtualTimeLoop.time(), as a C callable


def to_datetime(timestamp: float) -> datetime:
    """Seconds since the epoch -> aware UTC datetime."""
    return datetime.fromtimestamp(timestamp, UTC)


def to_timestamp(moment: datetime) -> float:
    """Aware datetime -> seconds since the epoch. A naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def to_seconds(duration: timedelta | float | int | None) -> float:
    """A timedelta or a number of seconds -> float seconds (None -> 0.0)."""
    if duration is None:
        return 0.0
    if isinstance(duration, timedelta):
        return duration.total_seconds()
    if isinstance(duration, bool) or not isinstance(duration, (int, float)):
        raise TypeError(f"expected a timedelta or seconds, got {duration!r}")
    return float(duration)


@runtime_checkable
class Clock(Protocol):
    """What every driver, worker and manager is given instead of the wall clock."""

    def time(self) -> float:
        """Now, as seconds since the Unix epoch."""

    def now(self) -> datetime:
        """Now, as an aware UTC datetime."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock."""

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> asyncio.Handle:
        """Run ``callback(*args)`` on the running loop when this clock reaches ``when``."""

    def next_seq(self) -> int:
        """A strictly increasing number that breaks ties between things stamped at one instant."""

    def run_coroutine(self, coro: Coroutine[Any, Any, T]) -> Awaitable[T]:
        """An awaitable that runs ``coro`` on the event loop this clock's time lives on, from
        whatever loop awaits it (``coro`` itself when that is the running loop)."""


class SystemClock:
    """Real time: ``time.time()`` for "now", the running asyncio loop for waiting."""

    def __init__(self) -> None:
        self._seq = itertools.count(1)

    def time(self) -> float:
        return time.time()

    def now(self) -> datetime:
        return to_datetime(time.time())

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> asyncio.Handle:
        loop = asyncio.get_running_loop()
        return loop.call_later(max(0.0, when - time.time()), callback, *args)

    def next_seq(self) -> int:
        return next(self._seq)

    def run_coroutine(self, coro: Coroutine[Any, Any, T]) -> Awaitable[T]:
        return coro

    def __repr__(self) -> str:
        return "SystemClock()"


class VirtualClock:
    """Simulated time, read from the simulation's virtual-time loop.

    Created by :class:`~khadem_lab.simulation.Simulation`; use ``sim.clock``.
    """

    def __init__(self, simulation: Simulation) -> None:
        self._sim = simulation
        self._loop = simulation.loop
        # The hottest call: the loop's virtual now read by C callables, without a Python frame.
        self.time: Callable[[], float] = functools.partial(_VNOW, self._loop)
        #: A strictly increasing number that breaks ties between things stamped at one instant
        #: (a counter's own ``__next__``: one per event, called without a Python frame).
        self.next_seq: Callable[[], int] = itertools.count(1).__next__
        #: The job attempts running: the run path keeps them for the stall watchdog.
        self.attempts = self._loop.attempts

    @property
    def simulation(self) -> Simulation:
        return self._sim

    @property
    def stall(self) -> Stall | None:
        """What the stall watchdog is stopping right now, if anything (see :mod:`.watchdog`)."""
        return self._loop.stall

    def now(self) -> datetime:
        """Virtual now, in the simulation's time zone."""
        return to_datetime(self._loop.time()).astimezone(self._sim.tz)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> asyncio.Handle:
        return self._loop.call_at(when, callback, *args)

    def call_idle_at(self, when: float, callback: Callable[..., object], *args: Any) -> asyncio.Handle:
        """A timer that only polls for work that may never come: see
        :meth:`~khadem_lab.vloop.VirtualTimeLoop.call_idle_at`."""
        return self._loop.call_idle_at(when, callback, *args)

    def end_idle(self) -> None:
        """Work was stored where pollers may find it: their pending polls count as work again."""
        self._loop.end_idle()

    def run_coroutine(self, coro: Coroutine[Any, Any, T]) -> Awaitable[T]:
        try:
            if asyncio.get_running_loop() is self._loop:
                return coro
        except RuntimeError:  # called outside any loop: decide where it runs when it is awaited
            pass
        return self._enter(coro)

    async def _enter(self, coro: Coroutine[Any, Any, T]) -> T:
        if asyncio.get_running_loop() is self._loop:
            return await coro
        return await self._sim.run_async(coro)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now().isoformat()})"
