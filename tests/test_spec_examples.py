"""The spec's "Testing Queue Jobs" examples, in Python, on the virtual clock with exact times.

Where the Dart tests wait real milliseconds and hope, these advance virtual time and assert the
instant each thing happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from khadem_lab import DriverConfig, InMemoryDriver, QueueManager, QueueMetrics, Simulation

from .support import RetryableJob, SimpleJob, elapsed


@pytest.fixture
def sim() -> Iterator[Simulation]:
    with Simulation() as simulation:
        yield simulation


@pytest.fixture
def driver(sim: Simulation) -> InMemoryDriver:
    return InMemoryDriver(DriverConfig(name="test"), clock=sim.clock)


@pytest.fixture
def qm(sim: Simulation, driver: InMemoryDriver) -> QueueManager:
    return QueueManager(None, driver=driver, clock=sim.clock)


def test_simple_job_executes_successfully(sim: Simulation, qm: QueueManager, driver: InMemoryDriver) -> None:
    executed: list[float] = []
    sim.run(qm.dispatch(SimpleJob(lambda: executed.append(elapsed(sim)))))

    assert sim.run(qm.process()) is True

    assert executed == [0.01]  # the job's 10 ms of work, in virtual time
    assert driver.is_empty


def test_job_with_retry_logic(sim: Simulation, qm: QueueManager) -> None:
    executions: list[float] = []

    def action() -> None:
        executions.append(elapsed(sim))
        if len(executions) < 3:
            raise RuntimeError("Retry me")

    sim.run(qm.dispatch(RetryableJob(action)))

    assert sim.run(qm.process()) is True  # fails, retry scheduled 100 ms later
    assert sim.run(qm.process()) is False  # not due yet
    sim.advance(timedelta(milliseconds=100))
    assert sim.run(qm.process()) is True  # fails again
    sim.advance(timedelta(milliseconds=100))
    assert sim.run(qm.process()) is True  # succeeds

    assert executions == pytest.approx([0.01, 0.12, 0.23], abs=1e-6)
    assert len(executions) == 3


def test_delayed_job_execution(sim: Simulation, qm: QueueManager) -> None:
    executed: list[float] = []
    delay = timedelta(milliseconds=500)
    sim.run(qm.dispatch(SimpleJob(lambda: executed.append(elapsed(sim))), delay=delay))

    assert sim.run(qm.process()) is False  # not yet
    assert executed == []

    sim.advance(delay)
    assert sim.run(qm.process()) is True
    assert executed == [pytest.approx(0.51, abs=1e-6)]


def test_batch_job_processing(sim: Simulation, qm: QueueManager, driver: InMemoryDriver) -> None:
    executed: list[int] = []
    jobs = [SimpleJob(lambda i=i: executed.append(i)) for i in range(3)]
    sim.run(qm.dispatch_batch(jobs))

    for _ in jobs:
        sim.run(qm.process())

    assert executed == [0, 1, 2]
    assert driver.is_empty


def test_worker_processes_jobs_correctly(sim: Simulation, qm: QueueManager, driver: InMemoryDriver) -> None:
    executed: list[tuple[int, float]] = []
    for i in range(5):
        sim.run(qm.dispatch(SimpleJob(lambda i=i: executed.append((i, round(elapsed(sim), 6))))))

    worker = sim.run(qm.start_worker(max_jobs=5, delay=timedelta(milliseconds=10)))

    # each job takes 10 ms and the worker pauses 10 ms after each one
    assert executed == [(0, 0.01), (1, 0.03), (2, 0.05), (3, 0.07), (4, 0.09)]
    assert worker.stats.completed == 5
    assert driver.is_empty


def test_queue_statistics(sim: Simulation, qm: QueueManager, driver: InMemoryDriver) -> None:
    sim.run(qm.dispatch(SimpleJob(lambda: None)))
    sim.run(qm.dispatch(SimpleJob(lambda: None), delay=timedelta(minutes=1)))

    stats = sim.run(driver.get_stats())

    assert stats["driver_name"] == "test"
    assert stats["queue_depth"] == 2
    assert stats["ready_jobs"] == 1
    assert stats["delayed_jobs"] == 1
    assert stats["pending_count"] == 2
    assert stats["processing_count"] == 0


def test_metrics_tracking(sim: Simulation) -> None:
    metrics = QueueMetrics()
    metrics_driver = InMemoryDriver(DriverConfig(name="test", track_metrics=True), metrics=metrics)
    qm = QueueManager(None, driver=metrics_driver, clock=sim.clock)

    sim.run(qm.dispatch(SimpleJob(lambda: None)))
    sim.run(qm.process())

    stats = sim.run(metrics_driver.get_stats())
    assert stats["metrics"]["jobs_queued"] == 1
    assert stats["metrics"]["jobs_completed"] == 1
    assert stats["metrics"]["success_rate"] == 1.0
    assert stats["metrics"]["jobs_by_type"] == {"SimpleJob": 1}
    metrics.reset()  # "Reset metrics (for testing)"
    assert sim.run(metrics_driver.get_stats())["metrics"]["jobs_completed"] == 0


def test_sync_driver_runs_the_job_inside_dispatch(sim: Simulation) -> None:
    """The spec's advice: test with the sync driver, assert right after dispatch."""
    qm = QueueManager(
        {"queue": {"default": "sync", "drivers": {"sync": {"driver": "sync"}}}}, clock=sim.clock
    )
    qm.load_from_config()
    executed: list[float] = []

    sim.run(qm.dispatch(SimpleJob(lambda: executed.append(elapsed(sim))), delay=timedelta(seconds=5)))

    assert executed == [pytest.approx(5.01, abs=1e-6)]  # the delay was waited out on the clock
    assert sim.run(qm.process()) is False  # nothing left for a worker
