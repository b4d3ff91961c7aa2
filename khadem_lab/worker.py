"""The worker loop: reserve, run, settle, pause, repeat; with concurrency and a graceful stop.

Usually started through :meth:`QueueManager.start_worker`. A worker with ``concurrency=n`` runs
``n`` slots on one event loop; each slot holds at most one job at a time. An idle slot waits on
the driver, which wakes it the instant a job becomes available (in-process drivers) or at the
next poll (drivers shared between processes).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from .backoff import Exponential
from .clock import to_seconds
from .execution import NO_HOOKS, Hooks, Outcome, execute, report_error
from .gather import ReserveGather
from .heartbeat import Heartbeat
from .records import JobStatus

if TYPE_CHECKING:
    from .drivers.base import BaseQueueDriver
    from .records import JobRecord

#: Longest pause between retries of a failing storage call (a server that is down).
MAX_ERROR_BACKOFF = 30.0
_COMPLETED = Outcome.COMPLETED  # a module constant: no enum lookup per job


@dataclass
class WorkerStats:
    """What a worker has done so far."""

    processed: int = 0
    completed: int = 0
    retried: int = 0
    dead: int = 0
    lease_lost: int = 0
    errors: int = 0
    #: Leases its heartbeat renewed, and renewals that found the lease taken over (see heartbeat.py).
    leases_renewed: int = 0
    lease_renewals_failed: int = 0
    by_slot: dict[str, int] = field(default_factory=dict)


class Worker:
    """Works jobs from one driver until stopped, out of jobs (``max_jobs``) or out of time."""

    def __init__(
        self,
        driver: BaseQueueDriver,
        *,
        name: str = "worker",
        queues: Sequence[str] | None = None,
        concurrency: int = 1,
        max_jobs: int | None = None,
        delay: timedelta | float | None = None,
        timeout: timedelta | float | None = None,
        hooks: Hooks = NO_HOOKS,
        prefetch: int = 1,
        burst: bool = False,
        release_on_stop: bool = False,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        if max_jobs is not None and (
            isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 0
        ):
            raise ValueError(f"max_jobs must be None or an integer >= 0, got {max_jobs!r}")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ValueError(f"prefetch must be an integer >= 1, got {prefetch!r}")
        self.prefetch = prefetch
        #: Burst mode: a slot that finds no job ready ends, instead of waiting for one.
        self.burst = burst
        #: On a graceful stop, give the jobs a prefetching slot reserved but has not started back
        #: at once (for other workers), instead of running them first.
        self.release_on_stop = release_on_stop
        self.driver = driver
        #: The pause after the n-th storage failure in a row: poll_interval, doubled each time,
        #: at most MAX_ERROR_BACKOFF (for as long as the outage lasts).
        self._error_backoff = Exponential(base=driver.config.poll_interval, max_delay=MAX_ERROR_BACKOFF)
        self.name = name
        self.queues = list(queues) if queues is not None else None
        self.concurrency = concurrency
        self.max_jobs = max_jobs
        self.delay = to_seconds(delay)
        self.timeout = None if timeout is None else to_seconds(timeout)
        self.stats = WorkerStats()
        self.hooks = dataclasses.replace(hooks, count_error=self._count_error)
        self.task: asyncio.Task[WorkerStats] | None = None
        self._stopping = False
        self._claimed = 0
        self._busy = 0
        self._wakeups: set[asyncio.Future[None]] = set()
        self._deadline: float | None = None
        #: The jobs each prefetching slot reserved and has not started (released on stop).
        self._held: dict[str, deque[JobRecord]] = {}
        self._releasing: asyncio.Future[None] | None = None
        self._gather: ReserveGather | None = None
        self.heartbeat = Heartbeat(driver, name, on_error=self._heartbeat_error, on_result=self._renewed)

    async def _heartbeat_error(self, error: BaseException) -> None:
        await report_error(self.hooks, error)

    def _renewed(self, renewed: int, lost: int) -> None:
        self.stats.leases_renewed += renewed
        self.stats.lease_renewals_failed += lost

    def _count_error(self) -> None:
        self.stats.errors += 1

    # -- state ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the worker loop runs."""
        return self.task is not None and not self.task.done()

    @property
    def busy(self) -> int:
        """Jobs in hand right now."""
        return self._busy

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- running -------------------------------------------------------------------------------
    async def run(self) -> WorkerStats:
        """Run until stopped; returns the stats. Normally awaited through the manager."""
        try:
            return await self._run()
        finally:
            self.heartbeat.stop()  # a stopped worker renews nothing: its jobs' leases run out

    async def _run(self) -> WorkerStats:
        clock = self.driver.clock
        if self.timeout is not None:
            self._deadline = clock.time() + self.timeout
        # Each slot's task runs its loop directly (no coroutine between the task and the loop:
        # every suspension of a job passes through each coroutine layer twice).
        run_slot = self._slot_one_by_one if self.prefetch == 1 else self._slot_prefetching
        if self.concurrency == 1:
            await run_slot(self.name)
        else:
            slots = [asyncio.ensure_future(run_slot(f"{self.name}.{i + 1}")) for i in range(self.concurrency)]
            try:
                await asyncio.gather(*slots)
            except BaseException:
                for slot in slots:
                    slot.cancel()
                raise
        if self._releasing is not None:
            await self._releasing
        return self.stats

    def request_stop(self) -> None:
        """Ask the worker to stop after the jobs in hand (safe to call from a job or a callback)."""
        self._stopping = True
        unstarted = (
            [record for held in self._held.values() for record in held] if self.release_on_stop else []
        )
        if unstarted and self._releasing is None:
            for held in self._held.values():
                held.clear()
            loop = self.task.get_loop() if self.task is not None else asyncio.get_running_loop()
            self._releasing = loop.create_task(self._release_unstarted(unstarted))
        for future in list(self._wakeups):
            if not future.done():
                future.set_result(None)

    async def stop(self, *, graceful: bool = True) -> WorkerStats:
        """Stop and wait for the worker to end. Graceful: jobs in hand finish first (with
        ``release_on_stop``, jobs a prefetching slot reserved but has not started are released at
        once instead, for other workers; that delivery still counts as an attempt, as a lease that
        ran out would). Not graceful:
        they are cancelled and stay reserved until their lease runs out (then they run again)."""
        return await self.driver.clock.run_coroutine(self._stop(graceful))

    async def _stop(self, graceful: bool) -> WorkerStats:
        self.request_stop()
        if self.task is not None:
            if not graceful:
                self.task.cancel()
            try:
                await asyncio.shield(self.task) if graceful else await self.task
            except asyncio.CancelledError:
                if graceful:
                    raise
        return self.stats

    async def wait(self) -> WorkerStats:
        """Wait until the worker ends by itself (max_jobs, timeout, or a stop)."""
        return await self.driver.clock.run_coroutine(self._wait())

    async def _wait(self) -> WorkerStats:
        if self.task is not None:
            await asyncio.shield(self.task)
        return self.stats

    # -- the loop -------------------------------------------------------------------------------
    async def _slot_one_by_one(self, slot_name: str) -> None:
        """A slot that reserves one job at a time (the default). The loop of
        :meth:`_slot_prefetching` without the batch bookkeeping, and with the reserve made without
        a coroutine where the driver allows (:meth:`BaseQueueDriver.reserve_at_once`).
        With the memory driver's plain primitives, bench/mmc.py (loop-thread CPU for 100k
        customers) 2.38 -> 2.26 s (bench/README.md, M/M/c)."""
        driver = self.driver
        clock = driver.clock
        stats = self.stats
        by_slot = stats.by_slot
        queues = self.queues
        hooks = self.hooks
        max_jobs = self.max_jobs
        reserve_at_once = driver.reserve_at_once
        task = asyncio.current_task()
        heartbeat = self.heartbeat
        cell = heartbeat.slot_cell()  # the job in hand, for the heartbeat (two stores per job)
        failures = 0
        # A remote store that takes acks with the next reserve (Redis on the system clock): a
        # finished job's ack goes in the next reserve's round trip, which follows at once; the
        # last one is sent on the way out.
        deferred: list[JobRecord] | None = (
            [] if not self.delay and getattr(driver, "acks_with_next_reserve", False) else None
        )
        # Several slots on such a store: the slots that want a job at the same moment reserve in
        # one call, which carries all their acks (one round trip for them all).
        gather = self._gather
        if gather is None and deferred is not None and self.concurrency > 1:
            gather = self._gather = ReserveGather(driver, queues)
        while not self._stopping:
            if max_jobs is not None and self._claimed >= max_jobs:
                break
            if self._deadline is not None and clock.time() >= self._deadline:
                break
            self._claimed += 1
            try:
                record = False if deferred or gather else reserve_at_once(queues, worker=slot_name)
                if gather is not None:
                    try:  # sent with the reserve (if it failed, the leases bring those jobs back)
                        record = await gather.take(slot_name, deferred or ())
                    finally:
                        if deferred:
                            deferred.clear()
                elif record is False and deferred:
                    try:  # sent with the reserve (if it failed, the leases bring those jobs back)
                        taken = await driver.reserve_many(queues, worker=slot_name, limit=1, acks=deferred)
                    finally:
                        deferred.clear()
                    record = taken[0] if taken else None
                elif record is False:
                    record = await driver.reserve(queues, worker=slot_name)
            except Exception as exc:  # storage trouble (a server down): report, back off, go on
                self._claimed -= 1
                failures += 1
                await report_error(hooks, exc)
                await self._pause(self._error_backoff.delay(failures))
                continue
            failures = 0
            if record is None:
                self._claimed -= 1
                if self.burst:
                    break
                await self._idle()
                continue
            self._busy += 1
            cell[0] = record
            if heartbeat.timer is None:
                heartbeat.ensure()
            try:
                outcome = await execute(
                    driver, record, worker=slot_name, hooks=hooks, deferred_acks=deferred, task=task
                )
            except Exception as exc:  # settling failed in storage; the lease brings the job back
                await report_error(hooks, exc)
                outcome = None
            finally:
                self._busy -= 1
                cell[0] = None
            stats.processed += 1
            by_slot[slot_name] = by_slot.get(slot_name, 0) + 1
            if outcome is _COMPLETED:
                stats.completed += 1
            else:
                self._count(outcome)
            if self.delay:
                await self._pause(self.delay)
        if deferred:
            await self._settle(deferred, slot_name)

    def _count(self, outcome: Outcome | None) -> None:
        """Count a run that did not complete."""
        stats = self.stats
        if outcome is Outcome.COMPLETED:
            stats.completed += 1
        elif outcome is Outcome.RETRY:
            stats.retried += 1
        elif outcome is Outcome.DEAD:
            stats.dead += 1
        elif outcome is Outcome.LEASE_LOST:
            stats.lease_lost += 1

    async def _slot_prefetching(self, slot_name: str) -> None:
        driver = self.driver
        clock = driver.clock
        stats = self.stats
        queues = self.queues
        prefetch = self.prefetch
        # A prefetching slot reserves several jobs in one go and acks finished ones together
        # (one round trip each for a remote store); the jobs it holds count as "in hand".
        held: deque[JobRecord] = deque()
        self._held[slot_name] = held
        deferred: list[JobRecord] = []
        failures = 0
        while held or not self._stopping:
            if not held:
                if self.max_jobs is not None and self._claimed >= self.max_jobs:
                    break
                if self._deadline is not None and clock.time() >= self._deadline:
                    break
                want = prefetch if self.max_jobs is None else min(prefetch, self.max_jobs - self._claimed)
                self._claimed += want
                try:  # the deferred acks go with the reserve: one round trip on Redis
                    taken = await driver.reserve_many(queues, worker=slot_name, limit=want, acks=deferred)
                except Exception as exc:  # storage trouble (a server down): report, back off, go on
                    self._claimed -= want
                    failures += 1
                    await report_error(self.hooks, exc)
                    await self._pause(self._error_backoff.delay(failures))
                    continue
                finally:  # sent with the reserve (if it failed, the leases bring those jobs back)
                    if deferred:
                        for done in deferred:
                            self.heartbeat.drop(done)
                        deferred.clear()
                failures = 0
                self._claimed -= want - len(taken)
                if not taken:
                    if self.burst:
                        break
                    await self._idle()
                    continue
                held.extend(taken)
                for record in taken:  # prefetched jobs are held too: their leases are renewed
                    self.heartbeat.hold(record)
                if self._stopping and self.release_on_stop:  # stopped while reserving: give them back
                    unstarted = list(held)
                    held.clear()
                    await self._release_unstarted(unstarted)
                    break
            record = held.popleft()
            self._busy += 1
            try:
                outcome = await execute(
                    driver, record, worker=slot_name, hooks=self.hooks, deferred_acks=deferred
                )
            except Exception as exc:  # settling failed in storage; the lease brings the job back
                await report_error(self.hooks, exc)
                outcome = None
            finally:
                self._busy -= 1
                if not deferred or deferred[-1] is not record:  # settled (an ack deferred stays held)
                    self.heartbeat.drop(record)
            stats.processed += 1
            stats.by_slot[slot_name] = stats.by_slot.get(slot_name, 0) + 1
            self._count(outcome)
            if self.delay:
                await self._pause(self.delay)
        if deferred:
            await self._settle(deferred, slot_name)

    async def _release_unstarted(self, records: list[JobRecord]) -> None:
        """Put the jobs that prefetching slots reserved but never started back at once, due as
        they were (their attempt stays counted); a failure is reported (their leases bring them
        back then)."""
        driver = self.driver
        for record in records:
            self._claimed -= 1
            self.heartbeat.drop(record)
            record.status = JobStatus.PENDING
            record.reserved_until = None
            record.reserved_by = None
            try:
                await driver.release_record(record)
            except Exception as exc:
                await report_error(self.hooks, exc)
                continue
            driver.notify(record.queue, record.available_at)

    async def _settle(self, deferred: list[JobRecord], slot_name: str) -> None:
        """Ack the finished jobs a prefetching slot holds; a failure is reported (their leases
        bring them back: they run again, at least once)."""
        try:
            await self.driver.settle_acks(deferred, worker=slot_name)
        except Exception as exc:
            await report_error(self.hooks, exc)
        for done in deferred:
            self.heartbeat.drop(done)
        deferred.clear()

    async def _idle(self) -> None:
        self.heartbeat.pause()
        if self._stopping:
            return
        wakeup: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wakeups.add(wakeup)
        try:
            await self.driver.wait_for_job(self.queues, self._deadline, wakeup)
        finally:
            self._wakeups.discard(wakeup)

    async def _pause(self, seconds: float) -> None:
        """Sleep on the clock, cut short by a stop request or the worker's deadline."""
        if self._stopping:
            return
        clock = self.driver.clock
        until = clock.time() + seconds
        if self._deadline is not None:
            until = min(until, self._deadline)
        wakeup: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wakeups.add(wakeup)
        timer = clock.call_at(until, _wake, wakeup)
        try:
            await wakeup
        finally:
            timer.cancel()
            self._wakeups.discard(wakeup)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"Worker({self.name!r}, {state}, processed={self.stats.processed})"


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
