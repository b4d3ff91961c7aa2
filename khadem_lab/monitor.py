"""QueueMonitor: the spec's "custom monitoring with periodic checks", made a feature.

Every ``interval`` of the driver's clock (virtual or real) the monitor reads the queue and checks
it against :class:`Thresholds`: the success rate, the queue depth, the age of the oldest ready
job, jobs whose lease expired (their worker vanished), and how long nothing has finished while
jobs wait. A check that crosses its limit **fires** an :class:`Alert` once; it **clears** once,
when the value is back within the limit's ``clear`` level (hysteresis: a value that hovers around
the limit does not fire again and again). Each firing and clearing goes to the ``on_alert``
callbacks (plain or async functions) and to :attr:`QueueMonitor.history`::

    monitor = QueueMonitor(qm.driver, interval=timedelta(minutes=5),
                           thresholds=Thresholds(queue_depth=Limit(100, clear=50)),
                           on_alert=lambda alert: print(alert.message))
    await monitor.start()            # periodic checks in the background, on the driver's clock
    ...
    await monitor.stop()

Under a :class:`~khadem_lab.simulation.Simulation` the checks run in virtual time, so a notebook
shows an alert firing at the simulated moment the queue crossed the line; beside a worker on the
system clock they run in real time. :meth:`QueueMonitor.check` runs one check now.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .clock import to_datetime, to_seconds
from .errors import KhademLabError

if TYPE_CHECKING:
    from .drivers.base import BaseQueueDriver
    from .manager import QueueManager

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limit:
    """A threshold: the check fires past ``fire`` and clears once back within ``clear`` (the same
    as ``fire`` unless given: give a gap to stop an alert from flapping)."""

    fire: float
    clear: float | None = None

    @property
    def clear_level(self) -> float:
        return self.fire if self.clear is None else self.clear


LimitLike = Limit | float | int | None


@dataclass(frozen=True)
class Thresholds:
    """What the monitor checks; None switches a check off. The spec's "What to Monitor" gives the
    defaults: a success rate below 90 % and a queue over 100 jobs.

    ``recent_success_rate``: fires *below* this (0.0-1.0), the share of the jobs finished since
    the previous check that completed (completed / (completed + failed for good); not measured
    while none finished). ``success_rate``: the same over every job since the metrics started, as
    the spec's example reads it: off by default, because volume dilutes it (an outage after a busy
    day barely moves it, and it stays low long after). Both need ``track_metrics``. ``queue_depth``:
    fires above this many jobs waiting or running. ``oldest_ready``: fires when a ready job has
    waited longer than this (seconds or a timedelta). ``expired_leases``: fires when more than this
    many jobs lost their worker (leases that ran out since the last check, or are past their end
    now). ``idle``: fires when jobs are waiting and none has finished (completed or failed) for
    longer than this (seconds or a timedelta; needs ``track_metrics``).
    """

    recent_success_rate: LimitLike = 0.9
    success_rate: LimitLike = None
    queue_depth: LimitLike = 100
    oldest_ready: LimitLike | timedelta = None
    expired_leases: LimitLike = None
    idle: LimitLike | timedelta = None

    def limits(self) -> dict[str, Limit]:
        """The checks switched on, by name, as :class:`Limit` values (durations in seconds)."""
        out: dict[str, Limit] = {}
        for name in CHECKS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, timedelta):
                value = Limit(to_seconds(value))
            elif not isinstance(value, Limit):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise KhademLabError(
                        f"Thresholds.{name} must be a number, a Limit or None, got {value!r}"
                    )
                value = Limit(float(value))
            out[name] = value
        return out


#: The checks, in the order they run; the ones that fire when the value goes *below* the limit.
CHECKS = ("recent_success_rate", "success_rate", "queue_depth", "oldest_ready", "expired_leases", "idle")
FIRES_BELOW = frozenset({"recent_success_rate", "success_rate"})
_WHAT = {
    "recent_success_rate": "success rate since the last check",
    "success_rate": "success rate",
    "queue_depth": "queue depth",
    "oldest_ready": "oldest ready job's wait",
    "expired_leases": "jobs whose lease expired",
    "idle": "time without a finished job while jobs wait",
}


@dataclass(frozen=True)
class Alert:
    """One alert firing (``firing=True``) or clearing (``False``), with the value that did it."""

    check: str
    firing: bool
    value: float
    limit: float
    time: datetime
    driver: str

    @property
    def message(self) -> str:
        what = _WHAT[self.check]
        if not self.firing:
            within = self._show(self.limit)
            return f"[{self.driver}] cleared: {what} {self._show(self.value)} (back within {within})"
        side = "below" if self.check in FIRES_BELOW else "above"
        return f"[{self.driver}] ALERT: {what} {self._show(self.value)}, {side} {self._show(self.limit)}"

    def _show(self, value: float) -> str:
        if self.check in FIRES_BELOW:
            return f"{value * 100:.1f}%"
        if self.check in ("oldest_ready", "idle"):
            return f"{value:g} s"
        return f"{value:g}"

    def __str__(self) -> str:
        return f"{self.time.isoformat()} {self.message}"


@dataclass
class Reading:
    """What one check read (None: not measured, the check is off or cannot be made)."""

    time: datetime
    values: dict[str, float | None] = field(default_factory=dict)


AlertCallback = Callable[[Alert], Any]


class QueueMonitor:
    """Periodic health checks of one driver's queue, with alerts that fire once and clear once."""

    def __init__(
        self,
        target: BaseQueueDriver | QueueManager,
        *,
        interval: timedelta | float = timedelta(minutes=5),
        thresholds: Thresholds | None = None,
        on_alert: AlertCallback | Iterable[AlertCallback] | None = None,
    ) -> None:
        from .manager import QueueManager

        #: The driver checked (a manager's default driver).
        self.driver: BaseQueueDriver = target.driver if isinstance(target, QueueManager) else target
        self.interval = to_seconds(interval)
        if not self.interval > 0:
            raise KhademLabError(f"QueueMonitor interval must be positive, got {interval!r}")
        self.thresholds = thresholds or Thresholds()
        self.limits = self.thresholds.limits()
        if callable(on_alert):
            self.callbacks: list[AlertCallback] = [on_alert]
        else:
            self.callbacks = list(on_alert or [])
        #: The alerts firing now, by check.
        self.active: dict[str, Alert] = {}
        #: Every alert fired and cleared, in order.
        self.history: list[Alert] = []
        #: What the last check read.
        self.last: Reading | None = None
        self.task: asyncio.Task[None] | None = None
        self._started = self.driver.clock.time()
        self._activity: tuple[int, float] | None = None  # (finished count, when it last changed)
        self._leases_expired: int | None = None
        self._outcomes: tuple[int, int] | None = None  # (completed, failed for good) at the last check

    # -- running ----------------------------------------------------------------------------------
    async def start(self) -> QueueMonitor:
        """Check every ``interval`` from now on (the first check one interval from now), in the
        background on the driver's clock; returns the monitor. Under a simulation its checks are
        timers like any other: a run that waits for the simulation to be idle waits until
        :meth:`stop`."""
        return await self.driver.clock.run_coroutine(self._start())

    async def _start(self) -> QueueMonitor:
        if self.task is None or self.task.done():
            self._started = self.driver.clock.time()
            metrics = self.driver.metrics
            if metrics is not None:  # the first window starts now
                self._outcomes = (metrics.jobs_completed, metrics.jobs_failed)
            self.task = asyncio.get_running_loop().create_task(self._loop(), name="queue-monitor")
        return self

    async def stop(self) -> None:
        """Stop the periodic checks (a check under way is cancelled)."""
        await self.driver.clock.run_coroutine(self._stop())

    async def _stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    async def _loop(self) -> None:
        clock = self.driver.clock
        ticks = 0
        while True:
            ticks += 1
            wakeup: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            timer = clock.call_at(self._started + ticks * self.interval, _wake, wakeup)
            try:
                await wakeup
            finally:
                timer.cancel()
            try:
                await self._check()
            except Exception:
                log.exception("queue monitor check of %s failed", self.driver.name)

    # -- one check --------------------------------------------------------------------------------
    async def check(self) -> list[Alert]:
        """Read the queue now and check it; returns the alerts that fired or cleared."""
        return await self.driver.clock.run_coroutine(self._check())

    async def _check(self) -> list[Alert]:
        reading = await self._read()
        self.last = reading
        changed: list[Alert] = []
        for name, limit in self.limits.items():
            value = reading.values.get(name)
            if value is None:
                continue
            below = name in FIRES_BELOW
            active = self.active.get(name)
            if active is None:
                crossed = value < limit.fire if below else value > limit.fire
                if crossed:
                    alert = Alert(name, True, value, limit.fire, reading.time, self.driver.name)
                    self.active[name] = alert
                    changed.append(alert)
            else:
                back = value >= limit.clear_level if below else value <= limit.clear_level
                if back:
                    del self.active[name]
                    changed.append(
                        Alert(name, False, value, limit.clear_level, reading.time, self.driver.name)
                    )
        for alert in changed:
            self.history.append(alert)
            (log.warning if alert.firing else log.info)("%s", alert.message)
            await self._tell(alert)
        return changed

    async def _read(self) -> Reading:
        driver = self.driver
        now = driver.clock.time()
        stats = await driver.get_stats()
        metrics = stats.get("metrics")
        values: dict[str, float | None] = {"queue_depth": float(stats["queue_depth"])}
        finished = None
        if metrics is not None:
            values["success_rate"] = float(metrics["success_rate"])
            values["recent_success_rate"] = self._recent_success_rate(metrics)
            finished = int(metrics["jobs_completed"]) + int(metrics["attempts_failed"])
        if "oldest_ready" in self.limits:
            earliest = await driver.next_available_at(None)
            values["oldest_ready"] = (
                max(0.0, now - earliest) if earliest is not None and earliest <= now else 0.0
            )
        if "expired_leases" in self.limits:
            values["expired_leases"] = float(await self._expired_leases(now, metrics))
        if finished is not None:
            if self._activity is None or self._activity[0] != finished:
                self._activity = (finished, now if self._activity is not None else self._started)
            waiting = stats["pending_count"] > 0
            values["idle"] = now - self._activity[1] if waiting else 0.0
        return Reading(to_datetime(now), values)

    def _recent_success_rate(self, metrics: dict[str, Any]) -> float | None:
        """Completed / finished among the jobs finished since the last check (or since the
        metrics started, at a first check without :meth:`start`); None if none finished."""
        outcomes = (int(metrics["jobs_completed"]), int(metrics["jobs_failed"]))
        before = self._outcomes or (0, 0)
        self._outcomes = outcomes
        done, failed = outcomes[0] - before[0], outcomes[1] - before[1]
        return done / (done + failed) if done + failed > 0 else None

    async def _expired_leases(self, now: float, metrics: dict[str, Any] | None) -> int:
        """Leases that ran out since the last check (this process's metrics) plus the reserved
        jobs past their lease end in storage now (not brought back yet)."""
        count = 0
        if metrics is not None:
            total = int(metrics["leases_expired"])
            count += total - (self._leases_expired if self._leases_expired is not None else 0)
            self._leases_expired = total
        try:
            held = await self.driver.list_records("reserved", now)
            count += sum(1 for r in held if r.reserved_until is not None and r.reserved_until <= now)
        except KhademLabError:  # a driver without list_records: one, if the earliest lease ended
            end = await self.driver.next_lease_expiry()
            count += 1 if end is not None and end <= now else 0
        return count

    async def _tell(self, alert: Alert) -> None:
        for callback in self.callbacks:
            try:
                result = callback(alert)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("QueueMonitor on_alert callback failed for %s", alert.message)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        firing = ", ".join(self.active) or "none"
        return f"QueueMonitor({self.driver.name!r}, every {self.interval:g} s, {state}, firing: {firing})"


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
