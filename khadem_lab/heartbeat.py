"""A worker's heartbeat: it renews the leases of the jobs the worker holds, so a live worker keeps
its jobs however long they run, and a frozen or killed one loses them when their lease ends.

One heartbeat per worker, one timer on the clock (virtual time in a simulation), and only while
the worker holds jobs: a slot that takes one job at a time puts it in its cell
(:meth:`Heartbeat.slot_cell`: two list stores per job, the only cost on the per-job path), a
prefetching slot calls :meth:`Heartbeat.hold` and :meth:`Heartbeat.drop`, and the worker calls
:meth:`Heartbeat.pause` when it goes idle, which cancels the timer, so an idle worker leaves no
timer behind (``run_until_idle`` finishes).

Every ``lease_time / 6`` the timer fires and the leases held with two thirds of ``lease_time`` or
less left are renewed, all in one driver call (:meth:`BaseQueueDriver.renew_leases`: one round
trip or transaction): each then ends ``lease_time`` after the beat. So a job renews its lease
first when it has run a third of it, then every third of it; shorter jobs are never renewed (no
driver call, no event), and a beat may come up to half a ``lease_time`` late (a loaded machine)
before a live worker's lease runs out. Code that holds the event loop (CPU-bound work without an
``await``) holds the heartbeat too: a job like that must finish within its lease, or run in a
thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .records import JobStatus

if TYPE_CHECKING:
    from .drivers.base import BaseQueueDriver
    from .records import JobRecord

log = logging.getLogger(__name__)

#: Beats per ``lease_time``.
BEATS_PER_LEASE = 6
#: A lease is renewed at a beat when this fraction of ``lease_time`` or less is left.
RENEW_WHEN_LEFT = 2 / 3
_RESERVED = JobStatus.RESERVED
#: Drivers without renewal whose workers have said so (once per driver).
_WARNED: weakref.WeakSet[BaseQueueDriver] = weakref.WeakSet()
#: Leeway in seconds for float rounding, so a lease exactly at the threshold is renewed.
_EPSILON = 1e-6


class Heartbeat:
    """Renews the leases of one worker's jobs (see the module doc).

    ``on_error(exc)`` gets a renewal that failed in storage (the next beat tries again);
    ``on_result(renewed, lost)`` the counts of each beat that called the driver."""

    def __init__(
        self,
        driver: BaseQueueDriver,
        worker: str | None,
        *,
        on_error: Callable[[BaseException], Awaitable[None]],
        on_result: Callable[[int, int], None] | None = None,
    ) -> None:
        self.driver = driver
        self.worker = worker
        self.interval = driver.lease_seconds / BEATS_PER_LEASE
        self.threshold = driver.lease_seconds * RENEW_WHEN_LEFT + _EPSILON
        #: The reservations held by prefetching slots (a record hashes by identity), in order.
        self.held: dict[JobRecord, None] = {}
        #: One cell per slot that holds one job at a time: ``[record]`` while it runs, else ``[None]``.
        self.cells: list[list[JobRecord | None]] = []
        self.timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_error = on_error
        self._on_result = on_result
        self._off = self.interval <= 0

    def slot_cell(self) -> list[JobRecord | None]:
        """A cell for a slot that holds one job at a time: it sets ``cell[0]`` to its job (then
        calls :meth:`ensure` if :attr:`timer` is None) and back to None once the job is settled."""
        cell: list[JobRecord | None] = [None]
        self.cells.append(cell)
        return cell

    def hold(self, record: JobRecord) -> None:
        """The worker took ``record``: keep its lease alive until :meth:`drop`."""
        self.held[record] = None
        self.ensure()

    def ensure(self) -> None:
        """A job is held: make sure the timer runs."""
        if self.timer is None and self._task is None and not self._off:
            self._arm()

    def drop(self, record: JobRecord) -> None:
        """``record`` is settled (or given up): no more renewals for it."""
        self.held.pop(record, None)

    def pause(self) -> None:
        """The worker goes idle: with no job held, the timer goes (it comes back with the next job)."""
        if self.timer is not None and not self._holding():
            self.timer.cancel()
            self.timer = None

    def stop(self) -> None:
        """The worker ends: no more beats."""
        self.held.clear()
        for cell in self.cells:
            cell[0] = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _holding(self) -> bool:
        return bool(self.held) or any(cell[0] is not None for cell in self.cells)

    def _arm(self) -> None:
        clock = self.driver.clock
        self.timer = clock.call_at(clock.time() + self.interval, self._fire)

    def _fire(self) -> None:
        self.timer = None
        if self._holding():
            self._task = asyncio.ensure_future(self._beat())

    async def _beat(self) -> None:
        try:
            # Chosen when the task runs: a job settled at the instant of the beat is not renewed.
            now = self.driver.clock.time()
            held = [cell[0] for cell in self.cells if cell[0] is not None]
            held += self.held
            due = [  # not one already settled (its worker may still be in a callback)
                r
                for r in held
                if r.status is _RESERVED
                and r.reserved_until is not None
                and r.reserved_until - now <= self.threshold
            ]
            if due:
                await self._renew(due)
        finally:
            self._task = None
        if self.timer is None and not self._off and self._holding():
            self._arm()

    async def _renew(self, due: list[JobRecord]) -> None:
        try:
            held = await self.driver.renew_leases(due, worker=self.worker)
        except NotImplementedError as exc:
            self._off = True
            if self.driver not in _WARNED:
                _WARNED.add(self.driver)
                log.warning("%s: %s", self.driver.name, exc)
        except Exception as exc:  # storage trouble: reported; the next beat tries again
            await self._on_error(exc)
        else:
            lost = 0
            for record, still in zip(due, held, strict=True):
                if not still:
                    lost += 1
                    self.held.pop(record, None)
                    for cell in self.cells:
                        if cell[0] is record:
                            cell[0] = None
            if self._on_result is not None:
                self._on_result(len(due) - lost, lost)
