"""Workers: when they run what, callbacks, concurrency, queues, stopping; on exact virtual times."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from khadem_lab import (
    DriverConfig,
    EventKind,
    EventLog,
    InMemoryDriver,
    QueueJob,
    QueueManager,
    Simulation,
    StorageError,
)

from .support import Recorded


@pytest.fixture
def sim() -> Iterator[Simulation]:
    with Simulation() as simulation:
        Recorded.reset(simulation)
        yield simulation


@pytest.fixture
def qm(sim: Simulation) -> QueueManager:
    return QueueManager(clock=sim.clock)


def run_scenario(sim: Simulation, coro: Any) -> Any:
    return sim.run(coro)


def test_an_idle_worker_wakes_the_instant_a_delayed_job_is_due(sim: Simulation, qm: QueueManager) -> None:
    async def scenario() -> None:
        await qm.start_worker(run_in_background=True)
        await qm.dispatch(Recorded("later"), delay=timedelta(seconds=37.5))

    sim.run(scenario())
    sim.advance(minutes=1)
    sim.run(qm.dispatch(Recorded("now")))  # dispatched at 60 s while the worker idles
    sim.advance(seconds=1)
    assert Recorded.runs == [(37.5, "later", 1), (60.0, "now", 1)]


def test_max_jobs_and_delay_between_jobs(sim: Simulation, qm: QueueManager) -> None:
    sim.run(qm.dispatch_batch([Recorded(f"j{i}", work=1) for i in range(4)]))
    worker = sim.run(qm.start_worker(max_jobs=3, delay=timedelta(seconds=5)))
    assert [t for t, _, _ in Recorded.runs] == [1.0, 7.0, 13.0]
    assert worker.stats.processed == 3 and not worker.running
    assert sim.run(qm.driver.size()) == 1


def test_worker_timeout_stops_it_after_the_job_in_hand(sim: Simulation, qm: QueueManager) -> None:
    sim.run(qm.dispatch_batch([Recorded(f"j{i}", work=40) for i in range(5)]))
    worker = sim.run(qm.start_worker(timeout=timedelta(seconds=100)))
    # jobs end at 40, 80 and 120: the third was taken before the 100 s mark and is finished
    assert [t for t, _, _ in Recorded.runs] == [40.0, 80.0, 120.0]
    assert sim.elapsed == timedelta(seconds=120)
    assert worker.stats.completed == 3


def test_concurrency_runs_jobs_side_by_side(sim: Simulation, qm: QueueManager) -> None:
    log = EventLog()
    qm.subscribe(log)
    sim.run(qm.dispatch_batch([Recorded(f"j{i}", work=10) for i in range(5)]))
    sim.run(qm.start_worker(max_jobs=5, concurrency=2, name="w"))
    assert [t for t, _, _ in Recorded.runs] == [10.0, 10.0, 20.0, 20.0, 30.0]
    workers = [e.worker for e in log.of_kind(EventKind.STARTED)]
    assert workers == ["w.1", "w.2", "w.1", "w.2", "w.1"]


def test_queues_are_taken_in_priority_order(sim: Simulation, qm: QueueManager) -> None:
    async def scenario() -> None:
        await qm.dispatch(Recorded("low-1"), queue="low")
        await qm.dispatch(Recorded("high-1"), queue="high")
        await qm.dispatch(Recorded("other"), queue="other")
        await qm.dispatch(Recorded("high-2"), queue="high")
        await qm.start_worker(max_jobs=3, queues=["high", "low"])

    sim.run(scenario())
    assert [name for _, name, _ in Recorded.runs] == ["high-1", "high-2", "low-1"]
    assert sim.run(qm.driver.size()) == 1  # "other" is not this worker's


def test_callbacks_are_called_with_the_job_result_and_error(sim: Simulation, qm: QueueManager) -> None:
    calls: list[tuple[Any, ...]] = []

    async def on_complete(job: QueueJob, result: Any) -> None:  # coroutine callbacks work too
        calls.append(("complete", job.display_name, result))

    sim.run(qm.dispatch(Recorded("ok")))
    sim.run(qm.dispatch(Recorded("bad", fail_until=99, extra={"n": 1})))
    worker = sim.run(
        qm.start_worker(
            max_jobs=5,  # 1 + 4 attempts of "bad"
            on_job_start=lambda job: calls.append(("start", job.name, job.attempt)),
            on_job_complete=on_complete,
            on_job_error=lambda job, error, stack: calls.append(
                ("error", job.name, str(error), "Traceback" in stack)
            ),
        )
    )
    sim.advance(minutes=5)
    assert calls[:2] == [("start", "ok", 1), ("complete", "Recorded", "ok done")]
    assert [c for c in calls if c[0] == "start"][1:] == [("start", "bad", n) for n in range(1, 5)]
    assert calls[-1] == ("error", "bad", "bad failed on attempt 4", True)  # once, after the last attempt
    assert worker.stats.dead == 1


def test_a_broken_callback_is_reported_to_on_error_and_the_worker_goes_on(
    sim: Simulation, qm: QueueManager
) -> None:
    errors: list[str] = []
    sim.run(qm.dispatch_batch([Recorded("a"), Recorded("b")]))
    worker = sim.run(
        qm.start_worker(
            max_jobs=2,
            on_job_complete=lambda job, result: 1 / 0,
            on_error=lambda error, stack: errors.append(type(error).__name__),
        )
    )
    assert [name for _, name, _ in Recorded.runs] == ["a", "b"]
    assert errors == ["ZeroDivisionError", "ZeroDivisionError"]
    assert (worker.stats.completed, worker.stats.errors) == (2, 2)  # counted, not only reported


def test_a_broken_callback_without_on_error_is_logged_and_counted(
    sim: Simulation, qm: QueueManager, caplog: pytest.LogCaptureFixture
) -> None:
    sim.run(qm.dispatch(Recorded("a")))
    worker = sim.run(qm.start_worker(max_jobs=1, on_job_complete=lambda job, result: 1 / 0))
    assert worker.stats.errors == 1
    assert "ZeroDivisionError" in caplog.text


def test_graceful_stop_finishes_the_job_in_hand(sim: Simulation, qm: QueueManager) -> None:
    sim.run(qm.dispatch_batch([Recorded("long", work=60), Recorded("next")]))
    worker = sim.run(qm.start_worker(run_in_background=True))
    sim.advance(seconds=10)
    assert worker.running and worker.busy == 1

    async def stop() -> None:
        await worker.stop()

    sim.run(stop())
    assert Recorded.runs == [(60.0, "long", 1)]  # finished; "next" was not started
    assert not worker.running
    assert sim.run(qm.driver.size()) == 1


def test_hard_stop_leaves_the_job_reserved_until_its_lease_runs_out(sim: Simulation) -> None:
    qm = QueueManager({"queue": {"drivers": {"m": {"driver": "memory", "lease_time": 120}}}}, clock=sim.clock)
    qm.load_from_config()
    log = EventLog()
    qm.subscribe(log)
    sim.run(qm.dispatch(Recorded("long", work=60)))
    worker = sim.run(qm.start_worker(run_in_background=True))
    sim.advance(seconds=10)
    sim.run(worker.stop(graceful=False))
    stats = sim.run(qm.driver.get_stats())
    assert stats["processing_count"] == 1 and Recorded.runs == []

    sim.run(qm.start_worker(run_in_background=True))
    sim.advance(minutes=5)
    # reserved at 0 with a 120 s lease: the idle worker wakes when it ends and runs the job again
    expired = log.of_kind(EventKind.LEASE_EXPIRED)
    assert [(e.time - sim.start.timestamp(), e.attempt) for e in expired] == [(120.0, 1)]
    assert Recorded.runs == [(180.0, "long", 2)]


def test_sync_driver_waits_out_retry_delays_inside_dispatch(sim: Simulation) -> None:
    qm = QueueManager({"queue": {"driver": "sync"}}, clock=sim.clock)
    qm.load_from_config()

    class Flaky(Recorded):
        retry_delay = timedelta(seconds=30)

    sim.run(qm.dispatch(Flaky("flaky", work=1, fail_until=2)))
    assert Recorded.runs == [(1.0, "flaky", 1), (32.0, "flaky", 2), (63.0, "flaky", 3)]
    assert sim.elapsed == timedelta(seconds=63)


def test_a_job_that_sleeps_past_its_timeout_is_cancelled(sim: Simulation, qm: QueueManager) -> None:
    class Hangs(QueueJob):
        timeout = timedelta(seconds=5)
        max_retries = 0

        async def handle(self) -> None:
            await asyncio.sleep(3600)

    log = EventLog()
    qm.subscribe(log)
    sim.run(qm.dispatch(Hangs()))
    sim.run(qm.start_worker(max_jobs=1))
    dead = sim.run(qm.driver.dead_letters.list())
    assert sim.elapsed == timedelta(seconds=5)
    assert dead[0].error_type == "JobTimeoutError" and "timeout of 5 s" in (dead[0].error or "")


def test_an_idle_simulation_is_idle_once_the_last_job_is_done(sim: Simulation, qm: QueueManager) -> None:
    """A spare slot waiting beside a running job watches its lease, but once nothing is reserved
    nothing is left to wait for: run_until_idle stops at the last completion, not at a lease end."""
    sim.run(qm.dispatch(Recorded("only", work=1)))
    sim.run(qm.start_worker(run_in_background=True, concurrency=2))  # slot 2 waits beside it
    assert sim.run_until_idle() == sim.start + timedelta(seconds=1)
    assert Recorded.runs == [(1.0, "only", 1)]


def test_a_broken_event_subscriber_is_logged_and_the_queue_goes_on(
    sim: Simulation, qm: QueueManager, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Any) -> None:
        raise RuntimeError("dashboard down")

    qm.subscribe(broken, kinds=[EventKind.COMPLETED])
    sim.run(qm.dispatch_batch([Recorded("a"), Recorded("b")]))
    sim.run(qm.start_worker(max_jobs=2))
    assert [name for _, name, _ in Recorded.runs] == ["a", "b"]
    failures = [r for r in caplog.records if "event subscriber" in r.getMessage()]
    assert len(failures) == 1 and "completed" in failures[0].getMessage()  # once, then counted
    assert [(e.subscriber, e.count) for e in qm.subscriber_errors] == [(broken, 2)]


class Tally:
    """A counting subscriber: it offers tally_event, so the queue need not build events for it."""

    def __init__(self, fail_on: EventKind | None = None) -> None:
        self.seen: list[tuple[EventKind, str, float | None]] = []
        self.fail_on = fail_on
        self.events: list[Any] = []

    def __call__(self, event: Any) -> None:
        self.events.append(event)
        self.tally_event(event.kind, event.job_type, event.duration)

    def tally_event(self, kind: EventKind, job_type: str, duration: float | None) -> None:
        if kind is self.fail_on:
            raise RuntimeError("counter broken")
        self.seen.append((kind, job_type, duration))


def test_counters_get_every_event_and_other_subscribers_see_the_same_seqs(sim: Simulation) -> None:
    # Given a run seen by a full log, and the same run seen by counters and a partial subscriber
    def run(subscribe: Any) -> Any:
        with Simulation() as again:
            Recorded.reset(again)
            manager = QueueManager(clock=again.clock)
            subscribe(manager)
            again.run(manager.dispatch_batch([Recorded("a", work=2), Recorded("b", work=3)]))
            again.run(manager.start_worker(max_jobs=2, concurrency=2))
            return manager

    full = EventLog()
    manager = run(lambda m: m.subscribe(full))
    tally, started = Tally(), EventLog()

    def subscribe_partly(m: QueueManager) -> None:
        m.subscribe(tally)
        m.subscribe(started, kinds=[EventKind.STARTED])

    partial = run(subscribe_partly)
    # Then the counter was tallied for every event (never handed one, even where one was built) ...
    assert tally.seen == [(e.kind, e.job_type, e.duration) for e in full]
    assert tally.events == []
    # ... the partial subscriber's events carry the seqs and times of the full history ...
    assert list(started) == full.of_kind(EventKind.STARTED)
    # ... and the driver's metrics count the same either way
    assert partial.driver.metrics.snapshot() == manager.driver.metrics.snapshot()  # type: ignore[union-attr]
    assert manager.driver.metrics.snapshot()["jobs_completed"] == 2  # type: ignore[union-attr]
    assert manager.driver.metrics.snapshot()["total_duration"] == 5.0  # type: ignore[union-attr]


def test_a_counter_that_raises_is_logged_once_and_counted(
    sim: Simulation, qm: QueueManager, caplog: pytest.LogCaptureFixture
) -> None:
    tally = Tally(fail_on=EventKind.COMPLETED)
    qm.subscribe(tally, kinds=[EventKind.COMPLETED, EventKind.DISPATCHED])
    sim.run(qm.dispatch_batch([Recorded("a"), Recorded("b")]))
    sim.run(qm.start_worker(max_jobs=2))
    assert [name for _, name, _ in Recorded.runs] == ["a", "b"]
    assert [kind for kind, _, _ in tally.seen] == [EventKind.DISPATCHED, EventKind.DISPATCHED]
    failures = [r for r in caplog.records if "event subscriber" in r.getMessage()]
    assert len(failures) == 1 and "completed (job 1" in failures[0].getMessage()
    assert [(e.subscriber, e.count) for e in qm.subscriber_errors] == [(tally, 2)]


class _StoreDown(InMemoryDriver):
    """A store whose server is down: every reserve fails as a real one's would (StorageError)."""

    async def reserve_record(self, queues: Any, now: float, worker: str | None) -> Any:
        raise StorageError("the store at test:0 does not answer")

    async def reserve_records(self, queues: Any, now: float, worker: str | None, limit: int) -> Any:
        raise StorageError("the store at test:0 does not answer")


@pytest.mark.parametrize("prefetch", [1, 10])
def test_a_worker_outlives_a_long_outage_backing_off_at_most_30_s(sim: Simulation, prefetch: int) -> None:
    # Given a worker whose store fails every reserve for 12 virtual hours (over 1,400 failures)
    qm = QueueManager(driver=_StoreDown(DriverConfig(name="down")), clock=sim.clock)
    failures: list[float] = []
    worker = sim.run(
        qm.start_worker(
            run_in_background=True,
            prefetch=prefetch,
            on_error=lambda error, _stack: failures.append(sim.time()),
        )
    )
    sim.advance(hours=12)
    # Then it is still running, reporting each failure, and waits 1, 2, 4 ... then 30 s between them
    assert worker.running and worker.task is not None and not worker.task.done()
    gaps = [b - a for a, b in itertools.pairwise(failures)]
    assert gaps[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert len(failures) > 1_030 and set(gaps[5:]) == {30.0}
    sim.run(qm.stop_workers())
