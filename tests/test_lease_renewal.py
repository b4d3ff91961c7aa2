"""Lease renewal (issue 10): a live worker's heartbeat keeps its jobs, a frozen or killed one loses
them when their lease ends.

The contract (khadem_lab.testing.checks) holds every driver to the primitive and to the 3x-lease
job; here: the last-attempt bug, prefetched jobs, idle simulations, a renewal that finds its lease
taken over, storage trouble during a beat, a driver without renewal, and a frozen worker process
(SIGSTOP) on the durable drivers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from khadem_lab import DriverConfig, EventKind, InMemoryDriver, JobRegistry, Simulation, SQLiteDriver
from khadem_lab.drivers.base import BaseQueueDriver
from khadem_lab.execution import Hooks
from khadem_lab.testing import DriverCase, QueueHarness, QueueMaker
from khadem_lab.testing.checks import Task
from khadem_lab.worker import Worker

from .conftest import RowDriver
from .test_processes import config_for, dispatch, read_log, start_worker
from .worker_process import Numbered

K = EventKind


@pytest.fixture
def make_queue(driver_case: DriverCase, tmp_path: Path) -> Iterator[QueueMaker]:
    if driver_case.runs_inline:
        pytest.skip(f"{driver_case} runs jobs inside dispatch: no worker holds a lease")
    with QueueMaker(driver_case, tmp_path) as maker:
        yield maker


def test_a_long_last_attempt_of_a_live_worker_is_not_dead_lettered(make_queue: QueueMaker) -> None:
    """The known bug: with no retry left, a job that outlived its lease was dead-lettered as "its
    worker stopped" while its worker was alive and about to complete it. Renewal keeps the lease."""
    queue = make_queue(lease_time=timedelta(seconds=60), max_retries=0)
    job_id = queue.dispatch(Task("last", work=190))
    queue.start_worker(name="A")
    queue.start_worker(name="B")  # idle: would bring the job back at its lease end
    queue.advance(400)
    assert queue.dead() == []
    assert [(t, k) for t, k, _ in queue.timeline(job_id) if k is not K.LEASE_RENEWED][-2:] == [
        (0, K.STARTED),
        (190, K.COMPLETED),
    ]
    assert queue.events(None, K.LEASE_EXPIRED, K.DEAD_LETTERED, K.LEASE_LOST) == []
    assert queue.size() == 0


def test_prefetched_jobs_and_deferred_acks_keep_their_leases(make_queue: QueueMaker) -> None:
    """prefetch=3, each job 50 s on a 60 s lease: the third waits 100 s in hand and the first one's
    ack is sent with the next reserve at 150 s; every lease is renewed meanwhile, so a second
    worker never takes one of them."""
    queue = make_queue(lease_time=timedelta(seconds=60))
    ids = queue.dispatch_many([Task(f"t{i}", work=50) for i in range(3)])
    a = queue.start_worker(name="A", prefetch=3)
    b = queue.start_worker(name="B")
    queue.advance(300)
    assert queue.starts() == [(0, ids[0]), (50, ids[1]), (100, ids[2])]
    assert queue.events(None, K.LEASE_EXPIRED, K.LEASE_LOST, K.RENEWAL_FAILED) == []
    assert (a.stats.completed, b.stats.processed) == (3, 0)
    assert a.stats.leases_renewed == len(queue.events(None, K.LEASE_RENEWED)) > 0
    assert {e.job_id for e in queue.events(None, K.LEASE_RENEWED)} == set(ids)
    assert queue.size() == 0 and queue.dead() == []


def test_a_renewal_that_finds_its_lease_taken_over_is_an_event_and_the_run_settles_nothing(
    make_queue: QueueMaker,
) -> None:
    """The queue is cleared while A runs a long job: A's next beat learns that the lease is no
    longer its own (RENEWAL_FAILED, counted), stops renewing it, and A's result is not stored."""
    queue = make_queue(lease_time=timedelta(seconds=60))
    job_id = queue.dispatch(Task("cleared", work=100))
    a = queue.start_worker(name="A")
    queue.advance(30)  # renewed at 20
    assert queue.run(queue.driver.clear()) == 1
    queue.advance(200)
    assert [(t, k) for t, k, _ in queue.timeline(job_id)][2:] == [
        (0, K.STARTED),
        (20, K.LEASE_RENEWED),
        (40, K.RENEWAL_FAILED),
        (100, K.COMPLETED),
        (100, K.LEASE_LOST),
    ]
    assert (a.stats.leases_renewed, a.stats.lease_renewals_failed, a.stats.lease_lost) == (1, 1, 0)
    stats = queue.stats()
    assert (stats["leases_renewed"], stats["lease_renewals_failed"], stats["queue_depth"]) == (1, 1, 0)


def test_a_job_settled_while_its_worker_is_still_in_a_callback_is_not_renewed(make_queue: QueueMaker) -> None:
    """on_job_complete takes 40 s after a 10 s job was acked: beats in that time leave the settled
    job alone (no renewal, no renewal_failed)."""
    queue = make_queue(lease_time=timedelta(seconds=60))
    queue.register(Task)
    job_id = queue.dispatch(Task("quick", work=10))

    async def slow_callback(job: Any, result: Any) -> None:
        await asyncio.sleep(40)

    worker = Worker(queue.driver, name="A", hooks=Hooks(on_job_complete=slow_callback))
    worker.task = queue.sim.spawn(worker.run(), name="A")
    queue.workers.append(worker)
    queue.advance(100)
    assert [k for _, k, _ in queue.timeline(job_id)] == [K.DISPATCHED, K.RESERVED, K.STARTED, K.COMPLETED]
    assert (worker.stats.completed, worker.stats.lease_renewals_failed, worker.stats.errors) == (1, 0, 0)


# ============================================================================== the memory driver
def test_short_jobs_are_never_renewed_and_an_idle_worker_leaves_no_timer() -> None:
    """Jobs shorter than a third of the lease cost no renewal; run_until_idle ends when the last
    job ends (the heartbeat's timer goes with the worker's last job), also after a long job."""
    with QueueMaker(DriverCase("memory", _memory)) as make_queue:
        queue = make_queue(lease_time=timedelta(seconds=60))
        queue.dispatch_many([Task(f"s{i}", work=19) for i in range(10)])
        worker = queue.start_worker()
        queue.sim.run_until_idle()
        assert queue.elapsed == 190 and worker.stats.completed == 10
        assert queue.events(None, K.LEASE_RENEWED) == [] and worker.heartbeat.timer is None
        queue.dispatch(Task("long", work=130))
        queue.sim.run_until_idle()
        assert queue.elapsed == 320
        assert [e.time - queue.t0 for e in queue.events(None, K.LEASE_RENEWED)] == [
            210,
            230,
            250,
            270,
            290,
            310,
        ]
        assert worker.heartbeat.timer is None and worker.running


def _memory(config: DriverConfig, clock: Any, registry: Any, _tmp: Path) -> BaseQueueDriver:
    return InMemoryDriver(config, clock=clock, registry=registry)


class NoRenewal(RowDriver):
    """A custom driver written before renewal existed: it keeps the base class's default."""

    async def renew_records(self, records: Any, now: float) -> list[bool | None]:
        return await BaseQueueDriver.renew_records(self, records, now)


def test_a_driver_without_renewal_keeps_working_and_says_what_to_implement(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its workers warn once, naming the method and what it must do, and stop renewing: a job
    longer than the lease is then delivered again (the old behaviour), nothing else breaks."""
    build = lambda config, clock, registry, _: NoRenewal(config, clock=clock, registry=registry)  # noqa: E731
    with caplog.at_level(logging.WARNING), QueueMaker(DriverCase("norenew", build)) as make_queue:
        queue = make_queue(lease_time=timedelta(seconds=60))
        job_id = queue.dispatch(Task("long", work=100))
        queue.start_worker(name="A")
        queue.start_worker(name="B")
        queue.advance(300)
    warnings = [r.getMessage() for r in caplog.records if "renew_records" in r.getMessage()]
    assert len(warnings) == 1
    assert "does not implement renew_records(records, now)" in warnings[0]
    assert "reserved_until = max(reserved_until, now + self.lease_seconds)" in warnings[0]
    # delivered again at each lease end, while its worker lives: what renewal prevents
    starts = [(e.time - queue.t0, e.worker, e.attempt) for e in queue.events(job_id, K.STARTED)]
    assert starts[:2] == [(0, "A", 1), (60, "B", 2)]


# ============================================================================== storage trouble
def test_a_beat_that_meets_a_locked_database_is_reported_and_the_next_one_renews(tmp_path: Path) -> None:
    """SQLite locked by another process during a beat: the failure goes to on_error (counted in
    the worker's errors), the lease is still long enough, and the next beat renews it."""
    sim = Simulation()
    path = tmp_path / "q.sqlite3"
    registry = JobRegistry()
    config = DriverConfig(name="q", lease_time=timedelta(seconds=60))
    driver = SQLiteDriver(config, path=path, busy_timeout=0.01, clock=sim.clock, registry=registry)
    queue = QueueHarness(DriverCase("sqlite", _memory), sim, driver, registry)
    try:
        job_id = queue.dispatch(Task("locked", work=65))
        worker = queue.start_worker(name="A")
        queue.advance(19)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock over the beat at 20
        queue.advance(2)
        other.execute("ROLLBACK")
        other.close()
        queue.advance(100)
        assert worker.stats.errors == 1
        renewed = [e.time - queue.t0 for e in queue.events(job_id, K.LEASE_RENEWED)]
        assert renewed == [30, 50]  # the lease from 0 had 30 s left at 30: renewed then
        assert [k for _, k, _ in queue.timeline(job_id)][-1] is K.COMPLETED
        assert queue.events(None, K.LEASE_EXPIRED, K.LEASE_LOST) == []
    finally:
        queue.close()


# ============================================================================== real processes
@pytest.mark.realtime
@pytest.mark.parametrize("kind", ["sqlite", "file", "redis"])
def test_a_frozen_worker_process_loses_its_job_after_the_lease_and_a_live_one_keeps_it(
    kind: str, tmp_path: Path
) -> None:
    """Process A runs a 7 s job on a 2 s lease while process B polls the same queue: A's heartbeat
    keeps the job (B does not take it while A lives). Then A is frozen (SIGSTOP): no more beats,
    and B takes the job once A's lease has ended, and completes it. (A beat may come a second late,
    half the lease, before a live worker's lease ends: that is the load this test tolerates.)"""
    config = config_for(kind, tmp_path, lease_time=2.0, max_retries=3)
    log = tmp_path / "runs.log"
    dispatch(config, [Numbered(1, work=7.0)])
    a = start_worker(config, log)
    b: subprocess.Popen[bytes] | None = None
    try:
        _wait_for(lambda: ("start", 1, a.pid) in read_log(log), "A to start the job")
        b = start_worker(config, log)
        time.sleep(4.5)  # over two leases, B polling all along: A's renewals keep the job
        assert read_log(log) == [("start", 1, a.pid)], "B took the job from a live worker"
        os.kill(a.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        _wait_for(lambda: ("start", 1, b.pid) in read_log(log), "B to take the job", timeout=60)
        # not at once: a lease always has a third of lease_time left after a beat (2 s / 3)
        assert time.monotonic() - frozen_at >= 0.6
        _, err = b.communicate(timeout=120)
        assert b.returncode == 0, err.decode()
        assert read_log(log) == [("start", 1, a.pid), ("start", 1, b.pid), ("done", 1, b.pid)]
    finally:
        for process in (a, b):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def _wait_for(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_renewal_events_reach_metrics_and_stats_without_being_counted_as_anything_else() -> None:
    """A renewal is not a failure, an expiry or a lost lease in the metrics."""
    with QueueMaker(DriverCase("memory", _memory)) as make_queue:
        queue = make_queue(lease_time=timedelta(seconds=60), track_metrics=True)
        queue.dispatch(Task("long", work=100))
        queue.start_worker()
        queue.advance(200)
        metrics = queue.stats()["metrics"]
        assert (metrics["jobs_completed"], metrics["leases_expired"], metrics["leases_lost"]) == (1, 0, 0)
        assert metrics["attempts_failed"] == 0 and queue.stats()["leases_renewed"] == 4


# ============================================================================== Redis
def test_redis_renews_all_the_leases_in_one_round_trip_and_checks_before_it_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One script call for a worker's leases; a foreign value at the queue's `reserved` key is a
    StorageError naming the key, and nothing was changed."""
    import redis

    from khadem_lab import RedisStorageDriver, StorageError

    from .conftest import REDIS_URL, redis_queue_name

    sim = Simulation()
    registry = JobRegistry()
    registry.register(Task)
    name = redis_queue_name("renew")
    driver = RedisStorageDriver(
        DriverConfig(name="r", lease_time=timedelta(seconds=60)),
        url=REDIS_URL,
        queue_name=name,
        clock=sim.clock,
        registry=registry,
    )
    try:
        sim.run(driver.push_many([Task(f"t{i}") for i in range(3)]))
        held = [sim.run(driver.reserve(None, worker="w")) for _ in range(3)]
        records = [r for r in held if r is not None]
        sim.advance(seconds=30)
        sent: list[Any] = []
        send = redis.connection.AbstractConnection.send_packed_command

        def counting(self: Any, command: Any, check_health: bool = True) -> None:
            sent.append(command)
            send(self, command, check_health)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
        assert sim.run(driver.renew_records(records, sim.time())) == [True, True, True]
        assert len(sent) == 1
        monkeypatch.undo()
        assert [r.reserved_until for r in records] == [sim.time() + 60] * 3
        assert sim.run(driver.next_lease_expiry()) == sim.time() + 60

        with redis.Redis.from_url(REDIS_URL) as client:
            key = f"{driver.prefix}reserved"
            saved = client.dump(key)
            client.delete(key)
            client.set(key, "not ours")
            with pytest.raises(StorageError, match=f"{key} holds a string, not a zset"):
                sim.run(driver.renew_records(records, sim.time() + 10))
            assert client.get(key) == b"not ours"
            assert [r.reserved_until for r in records] == [sim.time() + 60] * 3
            client.delete(key)
            client.restore(key, 0, saved)
    finally:
        sim.run(driver.dispose())
        sim.close()
