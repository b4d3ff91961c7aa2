"""Seeded workloads and failure injection, run headless on a simulation.

A :class:`Scenario` is data: how jobs arrive (:class:`Poisson`, :class:`Burst`, :class:`Daily`),
which jobs (a mix of :class:`JobType`, each with a service-time distribution:
:class:`FixedTime`, :class:`ExponentialTime`, :class:`LogNormalTime`), what goes wrong
(:class:`Flaky`, :class:`Outage`, :class:`SlowCalls`, :class:`WorkerCrash`), and the queue
(``workers``, ``concurrency``, ``driver``). :meth:`Scenario.run` simulates it and returns a
:class:`ScenarioResult` holding the event log and the frames of :mod:`khadem_lab.lab.frames`::

    result = Scenario(arrivals=[Poisson(per_minute=30)], failures=[Flaky(0.1)], workers=2).run(
        until=timedelta(hours=1))
    result.jobs.final_state.value_counts()

All randomness comes from ``random.Random`` streams derived from ``seed``, one per purpose
(arrivals, job mix, service times, failures), never from the global generator: the same seed
gives the same frames, row for row.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import random
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pandas as pd

from ..backoff import ExponentialJitter, RetryStrategy
from ..clock import to_datetime, to_seconds, to_timestamp
from ..config import DriverConfig
from ..drivers import BaseQueueDriver, InMemoryDriver, SQLiteDriver
from ..events import EventLog
from ..job import QueueJob
from ..manager import QueueManager
from ..registry import JobRegistry
from ..simulation import DEFAULT_START, Simulation
from ..worker import Worker
from . import frames

__all__ = [
    "Burst",
    "Daily",
    "ExponentialTime",
    "FixedTime",
    "Flaky",
    "JobType",
    "LogNormalTime",
    "Outage",
    "Poisson",
    "Scenario",
    "ScenarioResult",
    "SlowCalls",
    "WorkerCrash",
]

Duration = timedelta | float


# -- arrivals ---------------------------------------------------------------------------------------
class Arrivals(Protocol):
    def times(self, rng: random.Random, start: float, horizon: float) -> list[float]:
        """Arrival offsets in seconds from the start, in ``[0, horizon)``."""
        ...


@dataclass(frozen=True)
class Poisson:
    """Arrivals at a constant rate, exponential gaps between them."""

    per_minute: float

    def times(self, rng: random.Random, start: float, horizon: float) -> list[float]:
        rate = self.per_minute / 60.0
        found: list[float] = []
        if rate <= 0:
            return found
        t = rng.expovariate(rate)
        while t < horizon:
            found.append(t)
            t += rng.expovariate(rate)
        return found


@dataclass(frozen=True)
class Burst:
    """``count`` jobs at ``at`` after the start, spread evenly over ``spread``."""

    at: Duration
    count: int
    spread: Duration = 0.0

    def times(self, rng: random.Random, start: float, horizon: float) -> list[float]:
        first, width = to_seconds(self.at), to_seconds(self.spread)
        step = width / self.count if self.count else 0.0
        return [t for t in (first + i * step for i in range(self.count)) if t < horizon]


@dataclass(frozen=True)
class Daily:
    """A daily pattern: ``per_hour[h]`` jobs per hour during hour ``h`` of the day (24 values,
    in UTC: virtual time is UTC inside), Poisson within each hour."""

    per_hour: Sequence[float]

    def __post_init__(self) -> None:
        if len(self.per_hour) != 24:
            raise ValueError(f"Daily needs 24 hourly rates, got {len(self.per_hour)}")

    def times(self, rng: random.Random, start: float, horizon: float) -> list[float]:
        found: list[float] = []
        t = 0.0
        while t < horizon:
            hour_end = (math.floor((start + t) / 3600.0) + 1) * 3600.0 - start
            rate = self.per_hour[int(((start + t) // 3600) % 24)] / 3600.0
            end = min(hour_end, horizon)
            if rate > 0:
                t += rng.expovariate(rate)
                while t < end:
                    found.append(t)
                    t += rng.expovariate(rate)
            t = end  # memoryless: start again at the next hour's rate
        return found


# -- service times ----------------------------------------------------------------------------------
class ServiceTime(Protocol):
    def draw(self, rng: random.Random) -> float: ...


@dataclass(frozen=True)
class FixedTime:
    seconds: float

    def draw(self, rng: random.Random) -> float:
        return self.seconds


@dataclass(frozen=True)
class ExponentialTime:
    mean: float

    def draw(self, rng: random.Random) -> float:
        return rng.expovariate(1.0 / self.mean)


@dataclass(frozen=True)
class LogNormalTime:
    """Log-normal with the given median (seconds) and ``sigma`` of the underlying normal."""

    median: float
    sigma: float = 0.5

    def draw(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.median), self.sigma)


@dataclass(frozen=True)
class JobType:
    """One kind of job in the mix: picked with probability ``weight / sum of weights``."""

    name: str
    weight: float = 1.0
    service: ServiceTime = FixedTime(1.0)
    max_retries: int = 3
    retry_delay: timedelta | RetryStrategy = timedelta(seconds=30)
    timeout: timedelta | None = None
    queue: str = "default"


# -- failures ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Flaky:
    """Each call fails with ``probability`` (after its service time), for ``job_types`` (names;
    None: all)."""

    probability: float
    job_types: Sequence[str] | None = None


@dataclass(frozen=True)
class Outage:
    """Every call that starts in ``[start, start + duration)`` (offsets from the scenario's
    start) fails at once."""

    start: Duration
    duration: Duration
    job_types: Sequence[str] | None = None


@dataclass(frozen=True)
class SlowCalls:
    """A call is slow with ``probability``: it takes ``extra`` more (past a job's timeout, it is
    cancelled as timed out)."""

    probability: float
    extra: Duration = timedelta(minutes=5)
    job_types: Sequence[str] | None = None


@dataclass(frozen=True)
class WorkerCrash:
    """Worker number ``worker`` (from 1) stops without finishing at ``at`` (``graceful=False``):
    the jobs it held come back once their leases run out."""

    at: Duration
    worker: int = 1


Failure = Flaky | Outage | SlowCalls | WorkerCrash


def _applies(failure: Flaky | Outage | SlowCalls, job_type: str) -> bool:
    return failure.job_types is None or job_type in failure.job_types


# -- the jobs a scenario runs -------------------------------------------------------------------------
class ServiceUnavailable(ConnectionError):
    """What an injected failure raises."""


class _Runtime:
    """What the jobs of one run share: the clock, the failures, the failure stream."""

    def __init__(self, scenario: Scenario, sim: Simulation, rng: random.Random) -> None:
        self.sim = sim
        self.start = to_timestamp(scenario.start)
        self.rng = rng
        self.flaky = [f for f in scenario.failures if isinstance(f, Flaky)]
        self.outages = [
            (to_seconds(f.start), to_seconds(f.start) + to_seconds(f.duration), f)
            for f in scenario.failures
            if isinstance(f, Outage)
        ]
        self.slow = [f for f in scenario.failures if isinstance(f, SlowCalls)]

    async def call(self, job: ScenarioJob) -> None:
        name = type(job).__name__
        offset = self.sim.time() - self.start
        for begin, end, outage in self.outages:
            if begin <= offset < end and _applies(outage, name):
                raise ServiceUnavailable(f"outage: {name} {job.n} found the service down")
        seconds = job.service
        for slow in self.slow:
            if _applies(slow, name) and self.rng.random() < slow.probability:
                seconds += to_seconds(slow.extra)
        fails = any(_applies(f, name) and self.rng.random() < f.probability for f in self.flaky)
        await asyncio.sleep(seconds)
        if fails:
            raise ServiceUnavailable(f"flaky: {name} {job.n} failed")


@dataclass
class ScenarioJob(QueueJob):
    """The base of a scenario's job types (one subclass per :class:`JobType`, made per run)."""

    n: int = 0
    service: float = 0.0
    runtime: ClassVar[_Runtime]

    async def handle(self) -> None:
        await self.runtime.call(self)


def _job_classes(job_types: Sequence[JobType], runtime: _Runtime) -> list[type[ScenarioJob]]:
    classes = []
    for spec in job_types:
        if isinstance(spec.retry_delay, ExponentialJitter):
            spec.retry_delay.reset()  # the same draws on every run of the same scenario
        attributes: dict[str, Any] = {
            "runtime": runtime,
            "max_retries": spec.max_retries,
            "retry_delay": spec.retry_delay,
            "timeout": spec.timeout,
            "queue": spec.queue,
            "__module__": __name__,
            "__qualname__": spec.name,
        }
        classes.append(type(spec.name, (ScenarioJob,), attributes))
    return classes


# -- the scenario ---------------------------------------------------------------------------------------
@dataclass
class Scenario:
    """A workload, its failures, and the queue that runs it. See the module docstring.

    ``driver``: ``"memory"`` (default) or ``"sqlite"`` (a database in a temporary directory,
    removed after the run). ``lease_time``: how long a job taken by a crashed worker stays
    invisible before it is delivered again.
    """

    arrivals: Sequence[Poisson | Burst | Daily | Arrivals] = (Poisson(per_minute=10),)
    job_types: Sequence[JobType] = (JobType("Task"),)
    failures: Sequence[Failure] = ()
    seed: int = 0
    workers: int = 1
    concurrency: int = 1
    driver: str = "memory"
    start: datetime = DEFAULT_START
    lease_time: timedelta = timedelta(minutes=5)
    #: For a bounded log in very long runs (see :class:`~khadem_lab.events.EventLog`).
    log_maxlen: int | None = None

    def stream(self, purpose: str) -> random.Random:
        """The random stream of one purpose (``"arrivals"``, ``"mix"``, ``"service"``,
        ``"failures"``), derived from ``seed``."""
        return random.Random(f"{self.seed}:{purpose}")

    def workload(self, horizon: Duration) -> list[tuple[float, int, float]]:
        """The arrivals within ``horizon`` of the start: (offset s, job type index, service s),
        in time order."""
        seconds = to_seconds(horizon)
        start = to_timestamp(self.start)
        arrivals = self.stream("arrivals")
        times = sorted(t for source in self.arrivals for t in source.times(arrivals, start, seconds))
        weights = [spec.weight for spec in self.job_types]
        mix, service = self.stream("mix"), self.stream("service")
        cumulative = list(_accumulate(weights))
        total = cumulative[-1]
        picks = [bisect.bisect_right(cumulative, mix.random() * total) for _ in times]
        picks = [min(p, len(weights) - 1) for p in picks]
        return [(t, p, self.job_types[p].service.draw(service)) for t, p in zip(times, picks, strict=True)]

    def run(
        self, until: timedelta | datetime, progress: bool = False, *, chunks: int = 100
    ) -> ScenarioResult:
        """Simulate from ``start`` until ``until`` (a duration from the start, or a moment) and
        return the result. ``progress``: a ``tqdm.auto`` bar (a widget in a notebook, text in a
        terminal) advancing in ``chunks`` steps of virtual time.

        The simulation and the queue are closed when this returns (workers stopped where they
        were, nothing run past ``until``): read the run from the result's ``log``, ``stats`` and
        frames.
        """
        begin = to_timestamp(self.start)
        end = to_timestamp(until) if isinstance(until, datetime) else begin + to_seconds(until)
        work = self.workload(end - begin)
        tmp = Path(tempfile.mkdtemp(prefix="khadem-scenario-")) if self.driver == "sqlite" else None
        sim = Simulation(self.start, seed=self.seed)
        try:
            runtime = _Runtime(self, sim, self.stream("failures"))
            classes = _job_classes(self.job_types, runtime)
            registry = JobRegistry()
            for cls in classes:
                registry.register(cls)
            qm = QueueManager(driver=self._driver(registry, tmp), clock=sim.clock)
            log = EventLog(maxlen=self.log_maxlen)
            qm.subscribe(log)
            workers = sim.run(self._start(qm, sim, work, classes))
            bar = _progress_bar(end - begin) if progress else None
            try:
                for step in range(1, chunks + 1):
                    sim.run_until(to_datetime(begin + (end - begin) * step / chunks))
                    if bar is not None:
                        bar.update(sim.time() - begin - bar.n)
            finally:
                if bar is not None:
                    bar.close()
            stats = sim.run(qm.driver.get_stats())
            for worker in workers:
                if worker.running:
                    sim.run(worker.stop(graceful=False))
            sim.run(qm.dispose())
        finally:
            sim.close()
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        return ScenarioResult(self, log, sim, qm, stats, len(work))

    def _driver(self, registry: JobRegistry, tmp: Path | None) -> BaseQueueDriver:
        if self.driver == "memory":
            return InMemoryDriver(DriverConfig(name="memory", lease_time=self.lease_time), registry=registry)
        if self.driver == "sqlite":
            assert tmp is not None
            config = DriverConfig(name="sqlite", lease_time=self.lease_time)
            return SQLiteDriver(config, path=tmp / "queue.sqlite3", registry=registry)
        raise ValueError(f"Scenario.driver is 'memory' or 'sqlite', got {self.driver!r}")

    async def _start(
        self,
        qm: QueueManager,
        sim: Simulation,
        work: list[tuple[float, int, float]],
        classes: list[type[ScenarioJob]],
    ) -> list[Worker]:
        workers = [
            await qm.start_worker(run_in_background=True, concurrency=self.concurrency, name=f"worker-{i}")
            for i in range(1, self.workers + 1)
        ]
        start = to_timestamp(self.start)
        sim.spawn(_feed(qm, sim, start, work, classes), name="scenario-arrivals")
        for crash in self.failures:
            if isinstance(crash, WorkerCrash):
                if not 1 <= crash.worker <= len(workers):
                    raise ValueError(f"WorkerCrash names worker {crash.worker}; there are {len(workers)}")
                sim.spawn(_crash(sim, start + to_seconds(crash.at), workers[crash.worker - 1]))
        return workers


def _accumulate(values: Sequence[float]) -> list[float]:
    total, out = 0.0, []
    for value in values:
        total += value
        out.append(total)
    return out


async def _feed(
    qm: QueueManager,
    sim: Simulation,
    start: float,
    work: list[tuple[float, int, float]],
    classes: list[type[ScenarioJob]],
) -> None:
    """Dispatch each job at its arrival time (jobs arriving at one instant in one batch)."""
    i, n = 0, len(work)
    while i < n:
        offset = work[i][0]
        j = i
        while j < n and work[j][0] == offset:
            j += 1
        wait = start + offset - sim.time()
        if wait > 0:
            await asyncio.sleep(wait)
        batch = [classes[kind](n=k, service=service) for k, (_, kind, service) in enumerate(work[i:j], i + 1)]
        if len(batch) == 1:
            await qm.dispatch(batch[0])
        else:
            await qm.dispatch_batch(batch)
        i = j


async def _crash(sim: Simulation, moment: float, worker: Worker) -> None:
    await asyncio.sleep(max(0.0, moment - sim.time()))
    await worker.stop(graceful=False)


def _progress_bar(total: float) -> Any:
    from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]

    return tqdm(total=total, unit="s", unit_scale=True, desc="virtual time", leave=True)


# -- the result ---------------------------------------------------------------------------------------
@dataclass(eq=False)
class ScenarioResult:
    """What a run left: the event log, the driver's final statistics, and the frames (computed
    on first use). ``sim`` and ``qm`` are closed (kept to read ``sim.now()``, ``qm.driver``'s
    name, ...)."""

    scenario: Scenario
    log: EventLog
    sim: Simulation
    qm: QueueManager
    stats: dict[str, Any]
    arrivals: int

    @cached_property
    def events(self) -> pd.DataFrame:
        return frames.events(self.log)

    @cached_property
    def attempts(self) -> pd.DataFrame:
        return frames.attempts(self.log)

    @cached_property
    def jobs(self) -> pd.DataFrame:
        return frames.jobs(self.log)

    @cached_property
    def depth(self) -> pd.DataFrame:
        return frames.depth(self.log)

    @cached_property
    def metrics(self) -> pd.DataFrame:
        return frames.metrics(self.log)

    def __repr__(self) -> str:
        return (
            f"ScenarioResult({self.arrivals} arrivals, {len(self.log)} events, until "
            f"{self.sim.now().isoformat()}, seed={self.scenario.seed})"
        )
