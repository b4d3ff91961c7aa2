"""The driver contract's checks: what every driver must do, as plain functions with ``assert``.

Each check takes ``make_queue`` (a :class:`~khadem_lab.testing.harness.QueueMaker`): calling it
builds a fresh driver of the case on its own simulation. Every time is exact virtual time (seconds
after the harness was made); nothing sleeps for real. Drivers that run jobs inside dispatch
(``runs_inline``: the sync driver) skip, with the reason, the checks about a queue that workers take
from; everything else runs for every driver alike.

:data:`CHECKS` lists them in order. :func:`khadem_lab.testing.run_contract` runs them without
pytest; :class:`khadem_lab.testing.contract.DriverContract` makes one pytest test of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, overload

from ..backoff import Explicit, Exponential, ExponentialJitter, Fixed
from ..clock import to_datetime
from ..errors import JobIdConflict, KhademLabError, PermanentFailure
from ..events import EventKind
from ..execution import Outcome, execute
from ..job import QueueJob
from ..records import JobStatus
from .harness import MakeQueue, QueueHarness, SkipCheck, needs_job_ids, needs_queue

K = EventKind
CheckFunction = Callable[..., None]


@dataclass(frozen=True)
class Check:
    """One check of the contract: a function of ``make_queue`` (and of one of ``params``' keyword
    sets, if any: then each set is a case of its own, named by its key)."""

    name: str
    function: CheckFunction
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def doc(self) -> str:
        """The first line of the check's docstring, or its name in words."""
        doc = (self.function.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else self.name.replace("_", " ")

    def cases(self) -> list[tuple[str, Mapping[str, Any]]]:
        """(case id, keyword arguments) of each run: one with no id if there are no params."""
        return list(self.params.items()) or [("", {})]


#: Every check of the contract, in the order they run.
CHECKS: list[Check] = []


@overload
def check(function: CheckFunction, /) -> CheckFunction: ...
@overload
def check(*, params: Mapping[str, Mapping[str, Any]]) -> Callable[[CheckFunction], CheckFunction]: ...
def check(
    function: CheckFunction | None = None, /, *, params: Mapping[str, Mapping[str, Any]] | None = None
) -> CheckFunction | Callable[[CheckFunction], CheckFunction]:
    """Add a function to :data:`CHECKS` (``@check``, or ``@check(params={id: kwargs, ...})``)."""

    def add(function: CheckFunction) -> CheckFunction:
        CHECKS.append(Check(function.__name__, function, dict(params or {})))
        return function

    return add if function is None else add(function)


@contextlib.contextmanager
def raises(expected: type[BaseException], match: str) -> Iterator[None]:
    """What ``pytest.raises(expected, match=...)`` checks, without pytest."""
    try:
        yield
    except expected as exc:
        if not re.search(match, str(exc)):
            raise AssertionError(f"{type(exc).__name__} {str(exc)!r} does not match {match!r}") from exc
    else:
        raise AssertionError(f"did not raise {expected.__name__}")


@dataclass
class Task(QueueJob):
    """Works ``work`` virtual seconds; attempts up to ``fail_until`` fail; ``permanent`` never retries."""

    name: str = "task"
    fail_until: int = 0
    work: float = 0.0
    permanent: bool = False
    retry_delay = timedelta(seconds=10)

    async def handle(self) -> str:
        if self.work:
            await asyncio.sleep(self.work)
        if self.permanent:
            raise PermanentFailure(f"{self.name} can never succeed")
        if self.attempt <= self.fail_until:
            raise RuntimeError(f"{self.name} failed on attempt {self.attempt}")
        return self.name


class Other(Task):
    """A second job type, for the per-type statistics."""


@dataclass
class Outage(QueueJob):
    """Fails while ``Outage.down`` is set: a dependency that is fixed later."""

    name: str = "outage"
    down: ClassVar[bool] = True
    retry_delay = timedelta(seconds=10)

    async def handle(self) -> None:
        if Outage.down:
            raise ConnectionError(f"{self.name}: service unavailable")


def worker_name(queue: QueueHarness) -> str:
    """The worker named in events: the sync driver runs jobs itself, as 'sync'."""
    return "sync" if queue.runs_inline else "w1"


# ============================================================================== ordering
@check
def jobs_run_by_due_time_with_same_instant_ties_in_dispatch_order(make_queue: MakeQueue) -> None:
    queue = make_queue()
    needs_queue(queue)
    # Given jobs dispatched at t=0, two pairs of them due at the same instant
    plan = [("a", 10), ("b", 0), ("c", 10), ("d", 5), ("e", 0)]
    names = {queue.dispatch(Task(name), delay): name for name, delay in plan}
    # When a worker runs for a minute
    queue.start_worker()
    queue.advance(60)
    # Then each starts at its due time; ties go in dispatch order
    assert [(t, names[i]) for t, i in queue.starts()] == [(0, "b"), (0, "e"), (5, "d"), (10, "a"), (10, "c")]


@check
def reserve_takes_records_by_available_at_then_push_order(make_queue: MakeQueue) -> None:
    queue = make_queue()
    needs_queue(queue)
    late = queue.dispatch(Task("late"), 3)
    batch = queue.dispatch_many([Task("b1"), Task("b2"), Task("b3")], 2)
    first = queue.dispatch(Task("first"), 1)
    queue.advance(3)
    taken = [record.id for record in iter(queue.reserve, None)]
    assert taken == [first, *batch, late]


@check
def delayed_job_becomes_ready_exactly_at_its_time(make_queue: MakeQueue) -> None:
    queue = make_queue()
    needs_queue(queue)
    job_id = queue.dispatch(Task(), timedelta(seconds=30))
    assert queue.counts() == (0, 1, 0)
    queue.advance(29)
    assert queue.reserve() is None
    assert queue.counts() == (0, 1, 0)
    queue.advance(1)
    assert queue.counts() == (1, 0, 0)
    record = queue.reserve()
    assert record is not None and record.id == job_id


@check
def delays_and_absolute_times_start_jobs_exactly_then(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.start_worker()
    a = queue.dispatch(Task("a"), 30)
    b = queue.dispatch(Task("b"), at=queue.sim.now() + timedelta(seconds=45))
    c = queue.dispatch(Task("c"), timedelta(minutes=2))
    past = queue.dispatch(Task("past"), at=queue.sim.now() - timedelta(hours=1))  # due now
    queue.advance(200)
    assert queue.starts() == [(0, past), (30, a), (45, b), (120, c)]
    dispatched = {e.job_id: e.available_at for e in queue.events(None, K.DISPATCHED)}
    assert dispatched == {a: queue.t0 + 30, b: queue.t0 + 45, c: queue.t0 + 120, past: queue.t0}


@check
def negative_delay_and_delay_with_at_are_refused(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.register(Task)
    with raises(ValueError, "negative"):
        queue.run(queue.driver.push(Task(), -1))
    with raises(ValueError, "either delay or at"):
        queue.run(queue.driver.push(Task(), 1, at=queue.sim.now()))
    assert queue.size() == 0 and queue.log.events == []


@check
def reserve_with_queues_prefers_the_first_listed_queue_with_a_ready_job(make_queue: MakeQueue) -> None:
    queue = make_queue()
    needs_queue(queue)
    low1 = queue.dispatch(Task("low1"), queue="low")
    high1 = queue.dispatch(Task("high1"), queue="high")
    low2 = queue.dispatch(Task("low2"), queue="low")
    high_later = queue.dispatch(Task("high2"), 10, queue="high")
    taken = [queue.reserve(["high", "low"]) for _ in range(3)]
    assert [r.id for r in taken if r is not None] == [high1, low1, low2]
    assert queue.reserve(["high", "low"]) is None  # high2 is not due yet
    queue.advance(10)
    assert queue.reserve(["low"]) is None  # a queue not listed is not looked at
    record = queue.reserve(["other", "high"])
    assert record is not None and (record.id, record.queue) == (high_later, "high")


@check
def reserve_without_queues_takes_every_queue_by_due_time(make_queue: MakeQueue) -> None:
    queue = make_queue()
    needs_queue(queue)
    x_late = queue.dispatch(Task("x-late"), 5, queue="x")
    y = queue.dispatch(Task("y"), queue="y")
    x = queue.dispatch(Task("x"), queue="x")
    queue.advance(5)
    assert [r.id for r in iter(queue.reserve, None)] == [y, x, x_late]


@check
def worker_with_queues_drains_them_in_priority_order(make_queue: MakeQueue) -> None:
    queue = make_queue()
    needs_queue(queue)
    names = {
        queue.dispatch(Task(name), queue=q): name
        for name, q in [("l1", "low"), ("h1", "high"), ("l2", "low"), ("i1", "ignored"), ("h2", "high")]
    }
    queue.start_worker(["high", "low"])
    queue.advance(1)
    assert [names[i] for _, i in queue.starts()] == ["h1", "h2", "l1", "l2"]
    assert queue.counts() == (1, 0, 0)  # the job of the unlisted queue still waits


@check
def the_jobs_queue_attribute_is_its_default_queue(make_queue: MakeQueue) -> None:
    queue = make_queue()

    class Mail(Task):
        queue = "mail"

    queue.start_worker()
    job_id = queue.dispatch(Mail("m"))
    elsewhere = queue.dispatch(Mail("n"), queue="bulk")
    queue.advance(1)
    assert {e.job_id: e.queue for e in queue.events(None, K.COMPLETED)} == {job_id: "mail", elsewhere: "bulk"}


@check
def reserve_and_process_find_nothing_on_an_empty_queue(make_queue: MakeQueue) -> None:
    queue = make_queue()
    assert queue.reserve() is None
    assert queue.reserve(["a", "b"]) is None
    assert queue.process() is False
    assert queue.size() == 0
    assert queue.counts() == (0, 0, 0)
    assert queue.log.events == []


@check
def inline_driver_runs_jobs_inside_dispatch_and_gives_workers_nothing(make_queue: MakeQueue) -> None:
    queue = make_queue()
    if not queue.runs_inline:
        raise SkipCheck(f"{queue.case.name} queues jobs for workers; this is the inline drivers' behaviour")
    worker = queue.start_worker()
    queue.register(Task)
    now_id = queue.run(queue.driver.push(Task("now")))  # returns once the job has run
    assert queue.timeline(now_id) == [
        (0, K.DISPATCHED, 0),
        (0, K.RESERVED, 1),
        (0, K.STARTED, 1),
        (0, K.COMPLETED, 1),
    ]
    later_id = queue.run(queue.driver.push(Task("later", work=2), 30))
    assert queue.elapsed == 32
    assert queue.timeline(later_id) == [
        (0, K.DISPATCHED, 0),
        (30, K.RESERVED, 1),
        (30, K.STARTED, 1),
        (32, K.COMPLETED, 1),
    ]
    assert queue.reserve() is None and queue.process() is False
    assert worker.stats.processed == 0
    assert {e.worker for e in queue.events(None, K.RESERVED, K.STARTED, K.COMPLETED)} == {"sync"}


# ============================================================================== reserve / ack / release
@check
def reserve_counts_the_attempt_and_takes_a_lease(make_queue: MakeQueue) -> None:
    queue = make_queue(lease_time=timedelta(seconds=60))
    needs_queue(queue)
    job_id = queue.dispatch(Task())
    queue.dispatch(Task("later"), 1)
    record = queue.reserve(worker="w7")
    assert record is not None
    assert (record.id, record.attempts, record.status, record.reserved_by) == (
        job_id,
        1,
        JobStatus.RESERVED,
        "w7",
    )
    assert record.reserved_until == queue.now + 60
    assert [(e.kind, e.attempt, e.worker) for e in queue.events(job_id)] == [
        (K.DISPATCHED, 0, None),
        (K.RESERVED, 1, "w7"),
    ]
    assert queue.counts() == (0, 1, 1) and queue.size() == 2


@check
def a_jobs_timeout_extends_its_lease(make_queue: MakeQueue) -> None:
    class Bounded(Task):
        timeout = timedelta(seconds=45)

    queue = make_queue(lease_time=timedelta(seconds=60))
    needs_queue(queue)
    queue.dispatch(Bounded())
    record = queue.reserve()
    assert record is not None and record.reserved_until == queue.now + 60 + 45


@check
def ack_removes_the_job_for_good(make_queue: MakeQueue) -> None:
    queue = make_queue(lease_time=timedelta(seconds=60))
    needs_queue(queue)
    queue.dispatch(Task())
    record = queue.reserve()
    assert record is not None
    queue.run(queue.driver.ack_record(record))
    assert queue.counts() == (0, 0, 0) and queue.size() == 0
    queue.advance(120)  # long past its lease: an acked job is never delivered again
    assert queue.reserve() is None
    assert queue.events(None, K.LEASE_EXPIRED) == []
    assert queue.dead() == []


@check
def release_puts_the_job_back_until_its_new_time_keeping_attempts(
    make_queue: MakeQueue,
) -> None:
    queue = make_queue(lease_time=timedelta(seconds=60))
    needs_queue(queue)
    job_id = queue.dispatch(Task())
    record = queue.reserve()
    assert record is not None
    record.available_at = queue.now + 7
    record.last_error, record.error_type = "RuntimeError: try later", "RuntimeError"
    queue.run(queue.driver.release_record(record))
    assert queue.counts() == (0, 1, 0)
    queue.advance(6)
    assert queue.reserve() is None
    queue.advance(1)
    again = queue.reserve()
    assert again is not None
    assert (again.id, again.attempts, again.last_error) == (job_id, 2, "RuntimeError: try later")
    queue.advance(53)  # t=60: the first lease would end now, but it was given back
    assert queue.reserve() is None
    assert queue.events(None, K.LEASE_EXPIRED) == []
    assert queue.counts() == (0, 0, 1)


@dataclass
class SlowFirst(QueueJob):
    """The first run takes 100 s and fails; later runs take 10 s and succeed."""

    async def handle(self) -> None:
        await asyncio.sleep(100 if self.attempt == 1 else 10)
        if self.attempt == 1:
            raise RuntimeError("the first run fails")


@check
def a_run_that_outlives_its_lease_settles_nothing(make_queue: MakeQueue) -> None:
    """A's run takes longer than its lease and nothing renews it (A runs the job by hand, without a
    worker's heartbeat, as a frozen worker would hold it); B takes the job again at the lease end.
    When A's run then fails, its retry changes nothing (lease_lost): B holds the job and completes it."""
    queue = make_queue(lease_time=timedelta(seconds=60))
    needs_queue(queue)
    job_id = queue.dispatch(SlowFirst())
    record = queue.reserve(worker="A")
    assert record is not None
    run_of_a = queue.sim.spawn(execute(queue.driver, record, worker="A"))
    queue.start_worker(name="B")
    queue.advance(300)
    assert [
        (t, k, a, e.worker) for (t, k, a), e in zip(queue.timeline(job_id), queue.events(job_id), strict=True)
    ] == [
        (0, K.DISPATCHED, 0, None),
        (0, K.RESERVED, 1, "A"),
        (0, K.STARTED, 1, "A"),
        (60, K.LEASE_EXPIRED, 1, None),
        (60, K.RESERVED, 2, "B"),
        (60, K.STARTED, 2, "B"),
        (70, K.COMPLETED, 2, "B"),
        (100, K.FAILED, 1, "A"),
        (100, K.LEASE_LOST, 1, "A"),
    ]
    assert queue.size() == 0 and queue.dead() == []
    assert run_of_a.result() is Outcome.LEASE_LOST
    assert [w.stats.lease_lost for w in queue.workers] == [0]


@check
def a_prefetching_worker_runs_each_job_once_in_order(make_queue: MakeQueue) -> None:
    """prefetch=4: a slot reserves up to four jobs at once and acks finished ones together; the
    order, the times and the outcome are those of a worker taking them one by one."""
    queue = make_queue()
    needs_queue(queue)
    ids = queue.dispatch_many([Task(f"t{i}", work=2, fail_until=1 if i == 2 else 0) for i in range(6)])
    late = queue.dispatch(Task("late", work=2), delay=5)
    worker = queue.start_worker(prefetch=4)
    queue.advance(100)
    runs = [(t, job) for t, job in queue.starts()]
    assert runs == [
        (0, ids[0]),
        (2, ids[1]),
        (4, ids[2]),
        (6, ids[3]),
        (8, ids[4]),
        (10, ids[5]),
        (12, late),
        (16, ids[2]),
    ]
    assert [e.attempt for e in queue.events(ids[2], K.STARTED)] == [1, 2]  # its retry came due at 16
    assert queue.size() == 0 and queue.dead() == []
    assert [e.job_id for e in queue.events(None, K.LEASE_LOST)] == []
    assert worker.stats.completed == 7 and worker.stats.retried == 1


@check
def a_graceful_stop_finishes_the_prefetched_jobs(make_queue: MakeQueue) -> None:
    queue = make_queue()
    needs_queue(queue)
    ids = queue.dispatch_many([Task(f"t{i}", work=10) for i in range(5)])
    worker = queue.start_worker(prefetch=3)
    queue.advance(5)  # the slot holds t0..t2, t0 is running
    queue.run(worker.stop())
    assert [job for _, job in queue.starts()] == ids[:3]  # the jobs in hand ran; no new ones
    assert queue.counts() == (2, 0, 0) and queue.dead() == []


# ============================================================================== retries
@check(
    params={
        "timedelta": {"retry_delay": timedelta(seconds=10), "delays": [10, 10, 10]},
        "fixed": {"retry_delay": Fixed(4), "delays": [4, 4, 4]},
        "exponential": {"retry_delay": Exponential(base=5, factor=3), "delays": [5, 15, 45]},
        "exponential-capped": {
            "retry_delay": Exponential(base=timedelta(seconds=10), max_delay=timedelta(seconds=25)),
            "delays": [10, 20, 25],
        },
        "explicit": {"retry_delay": Explicit([2, timedelta(seconds=7)]), "delays": [2, 7, 7]},
    }
)
def each_retry_waits_exactly_the_jobs_retry_delay(
    make_queue: MakeQueue, retry_delay: object, delays: list[float]
) -> None:
    queue = make_queue()
    flaky = type("Flaky", (Task,), {"retry_delay": retry_delay, "max_retries": 3})
    queue.start_worker()
    job_id = queue.dispatch(flaky("flaky", fail_until=99))
    queue.advance(sum(delays) + 1)
    starts = [0.0]
    for delay in delays:
        starts.append(starts[-1] + delay)
    assert [t for t, _ in queue.starts()] == starts
    retries = queue.events(job_id, K.RETRY_SCHEDULED)
    assert [(e.time - queue.t0, e.available_at, e.attempt) for e in retries] == [
        (start, queue.t0 + start + delay, n)
        for n, (start, delay) in enumerate(zip(starts, delays, strict=False), 1)
    ]
    (dead,) = queue.events(job_id, K.DEAD_LETTERED)
    assert (dead.time - queue.t0, dead.attempt) == (starts[-1], 4)


@check
def exponential_jitter_delays_are_reproducible_from_the_seed(
    make_queue: MakeQueue,
) -> None:
    def start_times() -> list[float]:
        queue = make_queue()
        jittery = type(
            "Jittery", (Task,), {"retry_delay": ExponentialJitter(base=8, seed=42), "max_retries": 3}
        )
        queue.start_worker()
        queue.dispatch(jittery("j", fail_until=99))
        queue.advance(8 + 16 + 32 + 1)
        return [e.time for e in queue.events(None, K.STARTED)]

    rng = random.Random(42)
    expected = [make_queue().t0]
    for ceiling in (8, 16, 32):  # full jitter: uniform in [0, 8 * 2 ** (attempt - 1)]
        expected.append(expected[-1] + rng.uniform(0, ceiling))
    first, second = start_times(), start_times()
    assert first == expected
    assert second == first


@check(params={str(n): {"max_retries": n} for n in (0, 1, 3)})
def max_retries_means_that_many_retries_after_the_first_failure(
    make_queue: MakeQueue, max_retries: int
) -> None:
    queue = make_queue(max_retries=max_retries)  # the driver's default applies to Task
    queue.start_worker()
    job_id = queue.dispatch(Task("doomed", fail_until=99))
    queue.advance(10 * max_retries + 1)
    assert [e.attempt for e in queue.events(job_id, K.STARTED)] == list(range(1, max_retries + 2))
    assert len(queue.events(job_id, K.RETRY_SCHEDULED)) == max_retries
    (dead,) = queue.dead()
    assert (dead.id, dead.attempts, dead.error, dead.error_type) == (
        job_id,
        max_retries + 1,
        f"RuntimeError: doomed failed on attempt {max_retries + 1}",
        "RuntimeError",
    )
    assert dead.failed_at == to_datetime(queue.t0 + 10 * max_retries)
    assert queue.size() == 0


@check
def the_jobs_max_retries_overrides_the_drivers(make_queue: MakeQueue) -> None:
    class TwoTries(Task):
        max_retries = 1

    queue = make_queue(max_retries=5)
    queue.start_worker()
    job_id = queue.dispatch(TwoTries("t", fail_until=99))
    queue.advance(100)
    assert [e.attempt for e in queue.events(job_id, K.STARTED)] == [1, 2]
    assert [d.attempts for d in queue.dead()] == [2]


@check
def a_job_that_succeeds_on_its_last_attempt_is_not_dead_lettered(
    make_queue: MakeQueue,
) -> None:
    queue = make_queue(max_retries=2)
    queue.start_worker()
    job_id = queue.dispatch(Task("late-bloomer", fail_until=2))
    queue.advance(30)
    assert [k for _, k, _ in queue.timeline(job_id)][-1] is K.COMPLETED
    assert [e.time - queue.t0 for e in queue.events(job_id, K.COMPLETED)] == [20]
    assert queue.dead() == []


@check
def should_retry_false_makes_the_first_failure_final(make_queue: MakeQueue) -> None:
    queue = make_queue()

    class OneShot(Task):
        should_retry = False

    queue.start_worker()
    job_id = queue.dispatch(OneShot("once", fail_until=99))
    queue.advance(100)
    assert [k for _, k, _ in queue.timeline(job_id)] == [
        K.DISPATCHED,
        K.RESERVED,
        K.STARTED,
        K.FAILED,
        K.DEAD_LETTERED,
    ]
    assert [(d.id, d.attempts) for d in queue.dead()] == [(job_id, 1)]


@check
def permanent_failure_skips_the_remaining_retries(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.start_worker()
    job_id = queue.dispatch(Task("bad-data", permanent=True))
    queue.advance(100)
    assert len(queue.events(job_id, K.STARTED)) == 1
    assert queue.events(job_id, K.RETRY_SCHEDULED) == []
    (dead,) = queue.dead()
    assert (dead.error, dead.error_type) == (
        "PermanentFailure: bad-data can never succeed",
        "PermanentFailure",
    )


@check
def a_job_past_its_timeout_is_cancelled_and_counts_as_a_failed_attempt(make_queue: MakeQueue) -> None:
    queue = make_queue()

    class Slow(Task):
        timeout = timedelta(seconds=10)
        max_retries = 1
        retry_delay = timedelta(seconds=5)

    queue.start_worker()
    job_id = queue.dispatch(Slow("slow", work=60))
    queue.advance(100)
    assert [(t, k, n) for t, k, n in queue.timeline(job_id) if k is not K.RESERVED] == [
        (0, K.DISPATCHED, 0),
        (0, K.STARTED, 1),
        (10, K.FAILED, 1),
        (10, K.RETRY_SCHEDULED, 1),
        (15, K.STARTED, 2),
        (25, K.FAILED, 2),
        (25, K.DEAD_LETTERED, 2),
    ]
    assert [e.duration for e in queue.events(job_id, K.FAILED)] == [10, 10]
    (dead,) = queue.dead()
    assert dead.error_type == "JobTimeoutError"
    assert dead.error == "JobTimeoutError: Slow ran past its timeout of 10 s and was cancelled"


@check
def the_drivers_default_job_timeout_applies_to_jobs_without_one(
    make_queue: MakeQueue,
) -> None:
    queue = make_queue(default_job_timeout=timedelta(seconds=3), max_retries=0)
    queue.start_worker()
    job_id = queue.dispatch(Task("slow", work=5))
    queue.advance(10)
    (failed,) = queue.events(job_id, K.FAILED)
    assert (failed.time - queue.t0, failed.error) == (
        3,
        "JobTimeoutError: Task ran past its timeout of 3 s and was cancelled",
    )
    assert queue.events(job_id, K.COMPLETED) == []


@check
def without_a_dlq_a_failed_job_is_discarded_with_an_event(
    make_queue: MakeQueue,
) -> None:
    queue = make_queue(use_dlq=False, max_retries=0)
    queue.start_worker()
    job_id = queue.dispatch(Task("gone", fail_until=99))
    queue.advance(1)
    assert [k for _, k, _ in queue.timeline(job_id)] == [
        K.DISPATCHED,
        K.RESERVED,
        K.STARTED,
        K.FAILED,
        K.DISCARDED,
    ]
    (discarded,) = queue.events(job_id, K.DISCARDED)
    assert discarded.error == "RuntimeError: gone failed on attempt 1"
    assert queue.dead() == []
    stats = queue.stats()
    assert "dlq" not in stats
    assert (stats["queue_depth"], stats["metrics"]["jobs_failed"]) == (0, 1)


# ============================================================================== leases
@check
def an_expired_lease_is_reclaimed_on_the_next_reserve_and_the_job_runs_again(
    make_queue: MakeQueue,
) -> None:
    queue = make_queue(lease_time=timedelta(seconds=60))
    needs_queue(queue)
    job_id = queue.dispatch(Task("orphan"))
    crashed = queue.reserve(worker="crashed")  # its worker vanishes: never acked nor released
    assert crashed is not None and crashed.reserved_until == queue.now + 60
    queue.advance(59)
    assert queue.reserve(worker="w2") is None
    assert queue.events(None, K.LEASE_EXPIRED) == []
    queue.advance(1)
    again = queue.reserve(worker="w2")
    assert again is not None and (again.id, again.attempts, again.reserved_by) == (job_id, 2, "w2")
    (expired,) = queue.events(job_id, K.LEASE_EXPIRED)
    assert (expired.time - queue.t0, expired.available_at, expired.attempt) == (60, queue.t0 + 60, 1)
    assert queue.timeline(job_id)[-2:] == [(60, K.LEASE_EXPIRED, 1), (60, K.RESERVED, 2)]
    assert queue.counts() == (0, 0, 1)


@check
def an_idle_worker_picks_up_a_job_whose_lease_expired(make_queue: MakeQueue) -> None:
    queue = make_queue(lease_time=timedelta(seconds=60))
    needs_queue(queue)
    job_id = queue.dispatch(Task("orphan"))
    assert queue.reserve(worker="crashed") is not None
    queue.start_worker(name="w2")  # finds nothing available and waits
    queue.advance(100)
    assert [(t, k, n) for t, k, n in queue.timeline(job_id)][-4:] == [
        (60, K.LEASE_EXPIRED, 1),
        (60, K.RESERVED, 2),
        (60, K.STARTED, 2),
        (60, K.COMPLETED, 2),
    ]


@check
def a_lease_that_expires_after_the_last_attempt_dead_letters_the_job(
    make_queue: MakeQueue,
) -> None:
    queue = make_queue(lease_time=timedelta(seconds=60), max_retries=1)
    needs_queue(queue)
    job_id = queue.dispatch(Task("orphan"))
    assert queue.reserve(worker="crashed-1") is not None
    queue.advance(60)
    second = queue.reserve(worker="crashed-2")
    assert second is not None and second.attempts == 2
    queue.advance(60)
    assert queue.reserve() is None
    assert [k for _, k, _ in queue.timeline(job_id)][-2:] == [K.LEASE_EXPIRED, K.DEAD_LETTERED]
    (dead,) = queue.dead()
    assert (dead.id, dead.attempts, dead.error_type) == (job_id, 2, "LeaseExpired")
    assert dead.failed_at == to_datetime(queue.t0 + 120)
    assert queue.size() == 0
    metrics = queue.stats()["metrics"]
    assert (metrics["leases_expired"], metrics["jobs_failed"]) == (2, 1)


@check
def a_renewed_lease_is_not_reclaimed_before_its_new_end(make_queue: MakeQueue) -> None:
    """renew_records extends a held lease to ``now + lease_time`` (never shortens it): the job is
    not reclaimed at its first lease end, only at the renewed one if nobody renews it again."""
    queue = make_queue(lease_time=timedelta(seconds=60))
    needs_queue(queue)
    job_id = queue.dispatch(Task("long"))
    record = queue.reserve(worker="A")
    assert record is not None and record.reserved_until == queue.now + 60
    queue.advance(50)
    assert queue.run(queue.driver.renew_records([record], queue.now)) in ([True], [None])
    assert record.reserved_until == queue.t0 + 110
    assert queue.run(queue.driver.next_lease_expiry()) in (None, queue.t0 + 110)
    queue.advance(10)  # t=60: the first lease would end now
    assert queue.reserve(worker="B") is None
    assert queue.events(None, K.LEASE_EXPIRED) == []
    assert queue.counts() == (0, 0, 1)
    queue.advance(49)
    assert queue.reserve(worker="B") is None
    queue.advance(1)  # t=110: the renewed lease ends; nobody renewed it again
    again = queue.reserve(worker="B")
    assert again is not None and (again.id, again.attempts, again.reserved_by) == (job_id, 2, "B")
    assert [(t, k) for t, k, _ in queue.timeline(job_id)][-2:] == [(110, K.LEASE_EXPIRED), (110, K.RESERVED)]


@check
def a_renewal_never_shortens_a_lease(make_queue: MakeQueue) -> None:
    """A lease longer than ``now + lease_time`` (a job's timeout is part of it) is kept as it is."""

    class Bounded(Task):
        timeout = timedelta(seconds=45)

    queue = make_queue(lease_time=timedelta(seconds=60))
    needs_queue(queue)
    queue.dispatch(Bounded())
    record = queue.reserve()
    assert record is not None and record.reserved_until == queue.t0 + 105
    queue.advance(30)
    assert queue.run(queue.driver.renew_records([record], queue.now)) in ([True], [None])
    assert record.reserved_until == queue.t0 + 105
    queue.advance(74)
    assert queue.reserve(worker="B") is None  # t=104: still held
    queue.advance(1)
    assert queue.reserve(worker="B") is not None  # t=105


@check
def renewing_a_lease_that_was_taken_over_fails_and_changes_nothing(make_queue: MakeQueue) -> None:
    """A's lease ended and B took the job: A's renewal returns False and leaves B's lease as it
    is; B's own renewal works. After an ack, a renewal returns False too."""
    queue = make_queue(lease_time=timedelta(seconds=60))
    needs_queue(queue)
    job_id = queue.dispatch(Task("taken over"))
    first = queue.reserve(worker="A")
    assert first is not None and first.id == job_id
    queue.advance(60)
    second = queue.reserve(worker="B")  # brings the job back and takes it
    assert second is not None and (second.id, second.attempts) == (job_id, 2)
    queue.advance(10)
    assert queue.run(queue.driver.renew_records([first], queue.now)) == [False]
    assert second.reserved_until == queue.t0 + 120
    queue.advance(49)
    assert queue.reserve(worker="C") is None  # t=119: B's lease was not moved by A's renewal
    assert queue.run(queue.driver.renew_records([second], queue.now)) in ([True], [None])
    assert second.reserved_until == queue.t0 + 179
    queue.advance(1)
    assert queue.reserve(worker="C") is None  # t=120: B renewed it
    assert queue.events(None, K.LEASE_EXPIRED)[-1].time == queue.t0 + 60  # only A's lease ended
    assert queue.run(queue.driver.ack_record(second)) in (True, None)
    assert queue.run(queue.driver.renew_records([second], queue.now)) == [False]
    assert queue.counts() == (0, 0, 0)


@check
def a_live_worker_keeps_a_job_that_runs_three_times_its_lease(make_queue: MakeQueue) -> None:
    """A job runs 190 s on a 60 s lease while another worker waits: its worker's heartbeat renews
    the lease from 20 s on, every 20 s, so the job runs once and is never reclaimed. The renewals
    are events (LEASE_RENEWED, with the new lease end as ``available_at``) and counts."""
    queue = make_queue(lease_time=timedelta(seconds=60))
    needs_queue(queue)
    job_id = queue.dispatch(Task("long", work=190))
    a = queue.start_worker(name="A")
    b = queue.start_worker(name="B")
    queue.advance(400)
    renewals = [(e.time - queue.t0, e.available_at, e.worker) for e in queue.events(job_id, K.LEASE_RENEWED)]
    assert renewals == [(t, queue.t0 + t + 60, "A") for t in range(20, 190, 20)]
    assert [(t, k) for t, k, _ in queue.timeline(job_id) if k is not K.LEASE_RENEWED] == [
        (0, K.DISPATCHED),
        (0, K.RESERVED),
        (0, K.STARTED),
        (190, K.COMPLETED),
    ]
    assert queue.events(None, K.LEASE_EXPIRED, K.LEASE_LOST, K.RENEWAL_FAILED) == []
    assert (a.stats.completed, a.stats.leases_renewed, b.stats.processed) == (1, 9, 0)
    stats = queue.stats()
    assert (stats["leases_renewed"], stats["lease_renewals_failed"], stats["queue_depth"]) == (9, 0, 0)
    assert queue.dead() == []


@check
def jobs_whose_leases_end_together_come_back_in_reservation_order(
    make_queue: MakeQueue,
) -> None:
    queue = make_queue(lease_time=timedelta(seconds=60))
    needs_queue(queue)
    x, y = queue.dispatch_many([Task("x"), Task("y")])
    first_x = queue.reserve(worker="crashed")
    assert first_x is not None and first_x.id == x
    assert queue.reserve(worker="crashed") is not None  # y
    first_x.available_at = queue.now  # x is given back at once and taken again, after y
    queue.run(queue.driver.release_record(first_x))
    second_x = queue.reserve(worker="crashed")
    assert second_x is not None and second_x.id == x
    queue.advance(60)  # both leases end now
    reclaimed = queue.run(queue.driver.reclaim_expired(queue.now))
    assert [r.id for r in reclaimed] == [y, x]
    assert [r.id for r in iter(queue.reserve, None)] == [y, x]


# ============================================================================== dead letters
@check
def dead_letters_are_listed_oldest_first_and_can_be_inspected(
    make_queue: MakeQueue,
) -> None:
    queue = make_queue(max_retries=0)
    queue.start_worker()
    a = queue.dispatch(Task("a", fail_until=1))
    queue.advance(5)
    b = queue.dispatch(Other("b", fail_until=1))
    queue.advance(5)
    dead = queue.dead()
    assert [(d.id, d.type, d.queue, d.attempts, d.error) for d in dead] == [
        (a, "Task", "default", 1, "RuntimeError: a failed on attempt 1"),
        (b, "Other", "default", 1, "RuntimeError: b failed on attempt 1"),
    ]
    assert [d.failed_at for d in dead] == [to_datetime(queue.t0), to_datetime(queue.t0 + 5)]
    assert dead[0].payload == {"name": "a", "fail_until": 1, "work": 0.0, "permanent": False}
    dlq = queue.driver.dead_letters
    assert [d.id for d in queue.run(dlq.list(limit=1))] == [a]
    found = queue.run(dlq.get(b))
    assert found is not None and found.display_name == "Other"
    assert queue.run(dlq.get("no-such-id")) is None
    assert queue.run(dlq.count()) == 2
    assert queue.run(dlq.stats()) == {"total_jobs": 2, "jobs_by_type": {"Other": 1, "Task": 1}}


@check
def requeue_resets_attempts_and_runs_the_job_again(make_queue: MakeQueue) -> None:
    Outage.down = True
    queue = make_queue(max_retries=1)
    queue.start_worker()
    job_id = queue.dispatch(Outage("payment"))
    queue.advance(11)
    assert [d.attempts for d in queue.dead()] == [2]
    Outage.down = False  # the service is back
    queue.advance(100)
    assert queue.run(queue.driver.dead_letters.requeue(job_id)) is True
    queue.advance(0)
    assert queue.timeline(job_id)[-4:] == [
        (111, K.REQUEUED, 0),
        (111, K.RESERVED, 1),
        (111, K.STARTED, 1),
        (111, K.COMPLETED, 1),
    ]
    assert queue.dead() == [] and queue.size() == 0
    assert queue.run(queue.driver.dead_letters.requeue(job_id)) is False  # no longer dead


@check
def requeue_all_and_purge(make_queue: MakeQueue) -> None:
    queue = make_queue(max_retries=0)
    queue.start_worker()
    ids = [queue.dispatch(Task(name, fail_until=1)) for name in ("a", "b", "c", "d")]
    queue.advance(1)
    dlq = queue.driver.dead_letters
    # requeued jobs start over at attempt 1: fail_until=1 fails them again, in requeue order
    assert queue.run(dlq.requeue_all()) == 4
    queue.advance(1)
    assert [e.job_id for e in queue.events(None, K.REQUEUED)] == ids
    assert [(e.job_id, e.attempt) for e in queue.events(None, K.STARTED)][4:] == [(i, 1) for i in ids]
    assert [d.id for d in queue.dead()] == ids
    assert queue.run(dlq.purge([ids[1], "no-such-id"])) == 1
    assert [e.job_id for e in queue.events(None, K.PURGED)] == [ids[1]]
    assert queue.run(dlq.purge([ids[0], ids[0]])) == 1  # a repeated id is purged once
    assert queue.run(dlq.purge()) == 2
    assert queue.dead() == [] and queue.run(dlq.requeue_all()) == 0
    assert queue.stats()["dlq"] == {"total_jobs": 0, "jobs_by_type": {}}


# ============================================================================== inspection
def needs_inspection(queue: QueueHarness) -> None:
    """Skip, saying why, for a driver without the optional inspection primitives."""
    needs_queue(queue)
    try:
        queue.run(queue.driver.list_records("ready", queue.sim.time()))
    except KhademLabError as exc:
        if "does not implement" not in str(exc):
            raise
        raise SkipCheck(str(exc)) from None


@check
def list_records_gives_waiting_and_reserved_jobs_in_the_order_workers_take_them(
    make_queue: MakeQueue,
) -> None:
    queue = make_queue()
    needs_inspection(queue)
    a = queue.dispatch(Task("a"))
    b = queue.dispatch(Task("b"), delay=10)
    c = queue.dispatch(Task("c"))
    d = queue.dispatch(Task("d"), delay=5)
    taken = queue.reserve(worker="w1")
    assert taken is not None and taken.id == a
    now = queue.sim.time()

    def listed(state: str, limit: int | None = None) -> list[str]:
        return [r.id for r in queue.run(queue.driver.list_records(state, queue.sim.time(), limit))]

    assert (listed("ready"), listed("delayed"), listed("reserved")) == ([c], [d, b], [a])
    assert listed("delayed", limit=1) == [d]
    [held] = queue.run(queue.driver.list_records("reserved", now))
    assert (held.reserved_by, held.reserved_until, held.attempts) == (
        "w1",
        now + queue.driver.lease_seconds,
        1,
    )
    queue.advance(5)
    assert (listed("ready"), listed("delayed")) == ([c, d], [b])  # d is due now


@check
def get_record_finds_any_job_and_cancel_record_removes_only_waiting_ones(make_queue: MakeQueue) -> None:
    queue = make_queue()
    needs_inspection(queue)
    a = queue.dispatch(Task("a"))
    b = queue.dispatch(Task("b"), delay=10)
    queue.reserve(worker="w1")
    driver = queue.driver
    found_a, found_b = queue.run(driver.get_record(a)), queue.run(driver.get_record(b))
    assert found_a is not None and found_a.status is JobStatus.RESERVED
    assert found_b is not None and (found_b.status, found_b.type) == (JobStatus.PENDING, "Task")
    assert queue.run(driver.get_record("no-such-id")) is None
    assert queue.run(driver.cancel_record(a)) is None  # a worker holds it
    cancelled = queue.run(driver.cancel_record(b))
    assert cancelled is not None and cancelled.id == b
    assert queue.run(driver.cancel_record(b)) is None  # gone
    assert queue.run(driver.get_record(b)) is None
    assert queue.counts() == (0, 0, 1)
    queue.start_worker(name="w2")
    queue.advance(20)
    assert b not in [job for _, job in queue.starts()]


# ============================================================================== stats, metrics
@check
def get_stats_reports_counts_metrics_and_dead_letters(make_queue: MakeQueue) -> None:
    queue = make_queue(name="stats", max_retries=0)
    queue.start_worker()
    queue.dispatch(Other("o"))
    queue.dispatch(Task("ok"))
    queue.dispatch(Task("bad", fail_until=1))
    queue.dispatch(Task("slow", work=30))
    queue.dispatch(Task("later"), 60)
    queue.advance(10)  # o and ok done, bad dead-lettered, slow running, later waiting
    stats = queue.stats()
    assert {k: stats[k] for k in ("driver_name", "driver_type")} == {
        "driver_name": "stats",
        "driver_type": queue.driver.driver_type,
    }
    assert {
        k: stats[k]
        for k in ("queue_depth", "processing_count", "pending_count", "ready_jobs", "delayed_jobs")
    } == {
        "queue_depth": 2,
        "processing_count": 1,
        "pending_count": 1,
        "ready_jobs": 0,
        "delayed_jobs": 1,
    }
    assert queue.size() == 2
    metrics = stats["metrics"]
    assert {k: metrics[k] for k in ("jobs_queued", "jobs_started", "jobs_completed", "jobs_failed")} == {
        "jobs_queued": 5,
        "jobs_started": 4,
        "jobs_completed": 2,
        "jobs_failed": 1,
    }
    assert metrics["success_rate"] == 2 / 3
    assert metrics["jobs_by_type"] == {"Other": 1, "Task": 4}
    assert (metrics["attempts_failed"], metrics["jobs_retried"], metrics["jobs_dead_lettered"]) == (1, 0, 1)
    assert stats["dlq"] == {"total_jobs": 1, "jobs_by_type": {"Task": 1}}
    queue.advance(60)
    stats = queue.stats()
    assert (stats["queue_depth"], stats["metrics"]["jobs_completed"], stats["metrics"]["success_rate"]) == (
        0,
        4,
        0.8,
    )
    assert stats["metrics"]["max_duration"] == 30


@check
def metrics_reset_starts_counting_over(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.start_worker()
    queue.dispatch(Task("a"))
    queue.advance(1)
    assert queue.driver.metrics is not None
    queue.driver.metrics.reset()
    metrics = queue.stats()["metrics"]
    assert (
        metrics["jobs_queued"],
        metrics["jobs_completed"],
        metrics["jobs_by_type"],
        metrics["success_rate"],
    ) == (
        0,
        0,
        {},
        1.0,
    )
    queue.dispatch(Task("b"))
    queue.advance(1)
    assert queue.stats()["metrics"]["jobs_completed"] == 1


@check
def without_track_metrics_stats_have_no_metrics(make_queue: MakeQueue) -> None:
    queue = make_queue(track_metrics=False)
    queue.start_worker()
    queue.dispatch(Task("a"))
    queue.advance(1)
    stats = queue.stats()
    assert "metrics" not in stats and queue.driver.metrics is None
    assert (stats["queue_depth"], stats["dlq"]["total_jobs"]) == (0, 0)
    assert [e.kind for e in queue.events(None, K.COMPLETED)] == [K.COMPLETED]  # events still flow


# ============================================================================== clear / size
@check
def clear_removes_waiting_and_running_jobs_but_keeps_dead_letters(
    make_queue: MakeQueue,
) -> None:
    queue = make_queue(max_retries=0)
    needs_queue(queue)
    dead_id = queue.dispatch(Task("dead", fail_until=1))
    assert queue.process() is True
    queue.dispatch_many([Task("a"), Task("b")])
    queue.dispatch(Task("later"), 60)
    assert queue.reserve() is not None
    assert queue.size() == 3 and queue.counts() == (1, 1, 1)
    assert queue.run(queue.driver.clear()) == 3
    assert queue.size() == 0 and queue.counts() == (0, 0, 0)
    queue.advance(60)
    assert queue.reserve() is None
    assert [d.id for d in queue.dead()] == [dead_id]


@check
def a_cleared_job_never_runs(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.start_worker()
    queue.dispatch(Task("later"), 60)
    assert queue.size() == 1
    assert queue.run(queue.driver.clear()) == 1
    assert queue.size() == 0
    queue.advance(120)
    assert queue.events(None, K.STARTED) == []


# ============================================================================== events
@check
def events_carry_time_seq_job_queue_attempt_worker_and_error(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.start_worker()
    job_id = queue.dispatch(Task("e", fail_until=1, work=2), queue="mail")
    queue.advance(20)
    events = queue.events(job_id)
    t0 = queue.t0
    assert [(e.time - t0, e.kind, e.attempt) for e in events] == [
        (0, K.DISPATCHED, 0),
        (0, K.RESERVED, 1),
        (0, K.STARTED, 1),
        (2, K.FAILED, 1),
        (2, K.RETRY_SCHEDULED, 1),
        (12, K.RESERVED, 2),
        (12, K.STARTED, 2),
        (14, K.COMPLETED, 2),
    ]
    assert all(a.seq < b.seq for a, b in itertools.pairwise(events))
    assert {(e.job_type, e.queue, e.driver) for e in events} == {("Task", "mail", "contract")}
    assert [e.worker for e in events] == [None] + [worker_name(queue)] * 7
    error = "RuntimeError: e failed on attempt 1"
    assert [e.error for e in events] == [None, None, None, error, error, None, None, None]
    assert [e.available_at for e in events if e.available_at is not None] == [t0, t0 + 12]
    assert [e.duration for e in events if e.duration is not None] == [2, 2]
    assert events[-1].at == to_datetime(t0 + 14)


@check
def event_seq_is_strictly_increasing_across_jobs(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.start_worker()
    for n in range(5):
        queue.dispatch(Task(f"j{n}", fail_until=n % 2), n % 3)
    queue.advance(60)
    seqs = [e.seq for e in queue.log.events]
    assert len(seqs) > 20 and seqs == sorted(set(seqs))
    assert [e.time for e in queue.log.events] == sorted(e.time for e in queue.log.events)


# ============================================================================== client job ids
@check
def a_dispatch_repeated_with_its_job_id_stores_the_job_once(make_queue: MakeQueue) -> None:
    """A dispatch sent again with the same job_id (a retry after a lost reply) stores nothing more."""
    queue = make_queue()
    needs_job_ids(queue)
    queue.start_worker()
    # Given a job dispatched with an id of the caller's choosing, due in 10 s
    first = queue.dispatch(Task("order", work=5), 10, job_id="order-42")
    # When the same dispatch is sent again while it waits, and again while it runs
    again = queue.dispatch(Task("order", work=5), 10, job_id="order-42")
    assert (first, again) == ("order-42", "order-42")
    assert queue.size() == 1
    queue.advance(12)
    assert queue.dispatch_many([Task("order", work=5)], job_ids=["order-42"]) == ["order-42"]
    queue.advance(30)
    # Then it ran once, under that id, and was announced once
    assert queue.starts() == [(10, "order-42")]
    assert [e.job_id for e in queue.events(None, K.DISPATCHED)] == ["order-42"]
    assert [e.job_id for e in queue.events(None, K.COMPLETED)] == ["order-42"]
    assert queue.size() == 0


@check
def a_completed_jobs_id_is_remembered_for_remember_job_ids(make_queue: MakeQueue) -> None:
    """Once its job completed, an id stays taken for ``remember_job_ids`` after its dispatch."""
    queue = make_queue()
    needs_job_ids(queue)
    queue.driver.remember_job_ids = 3600
    queue.start_worker()
    queue.dispatch(Task("a"), job_id="report-1")
    queue.advance(60)
    # Within the hour: the retry of that dispatch stores nothing
    queue.dispatch(Task("a"), job_id="report-1")
    queue.advance(60)
    assert queue.starts() == [(0, "report-1")] and queue.size() == 0
    # After it: the id is free again, and a dispatch with it is a new job
    queue.advance(3600 - 120)
    queue.dispatch(Task("a"), job_id="report-1")
    queue.advance(60)
    assert queue.starts() == [(0, "report-1"), (3600, "report-1")]


@check
def a_different_job_under_a_taken_job_id_is_refused(make_queue: MakeQueue) -> None:
    """Another job (other data) with a taken job_id raises JobIdConflict and stores nothing."""
    queue = make_queue()
    needs_job_ids(queue)
    queue.register(Task)
    queue.dispatch(Task("pay 10"), 60, job_id="order-7")
    with raises(JobIdConflict, "'order-7' is already taken by a different job"):
        queue.run(queue.driver.push(Task("pay 99"), 60, job_id="order-7"))
    assert queue.size() == 1
    if not queue.runs_inline:  # (the sync driver would run order-8 inside the dispatch first)
        # A batch stores the jobs whose ids are free, then reports the conflict
        with raises(JobIdConflict, "order-7"):
            queue.run(queue.driver.push_many([Task("x"), Task("pay 99")], 60, job_ids=["order-8", "order-7"]))
        assert queue.size() == 2
        assert [e.job_id for e in queue.events(None, K.DISPATCHED)] == ["order-7", "order-8"]


@check
def a_dead_jobs_id_stays_taken_after_its_remembered_time(make_queue: MakeQueue) -> None:
    """A dead-lettered job keeps its id taken: a dispatch with it stores nothing."""
    queue = make_queue(max_retries=0)
    needs_job_ids(queue)
    queue.driver.remember_job_ids = 1
    queue.dispatch(Task("d", fail_until=1), job_id="dies-once")
    if not queue.runs_inline:
        assert queue.process() is True
    queue.advance(10)  # past the remembered time: the dead job alone keeps the id taken
    assert [d.id for d in queue.dead()] == ["dies-once"]
    queue.dispatch(Task("d", fail_until=1), job_id="dies-once")
    queue.advance(10)
    assert queue.size() == 0 and len(queue.dead()) == 1
    assert [e.job_id for e in queue.events(None, K.DISPATCHED)] == ["dies-once"]


@check
def job_ids_are_checked_before_anything_is_stored(make_queue: MakeQueue) -> None:
    """A job_id that is not a usable id, or one given twice in a batch, is refused, naming it."""
    queue = make_queue()
    needs_job_ids(queue)
    queue.register(Task)
    for bad in ["", "42", "a b", "x" * 201, 42, "na\u00efve"]:
        with raises(KhademLabError, "job_id must be a string of 1 to 200"):
            queue.run(queue.driver.push(Task(), job_id=bad))
    with raises(KhademLabError, "job_id 'a-1' is given twice"):
        queue.run(queue.driver.push_many([Task(), Task()], job_ids=["a-1", "a-1"]))
    with raises(KhademLabError, "1 id\\(s\\) for 2 job\\(s\\)"):
        queue.run(queue.driver.push_many([Task(), Task()], job_ids=["a-1"]))
    assert queue.size() == 0 and queue.events(None, K.DISPATCHED) == []
