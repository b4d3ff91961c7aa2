"""Issue 10, fault 2: a settle (ack, release, bury) that hits "database is locked" is retried.

Before: with a short busy_timeout, an ack that lost the race for SQLite's write lock failed, the
worker went on, and the job ran a second time once its lease ended (73 of 20,000 with 0.05 s),
with no crash at all. Now a settle that meets a lock retries with backoff, bounded by the lease.
Real processes, outcomes counted (no timing assertions)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from khadem_lab import DriverConfig, JobRegistry, Simulation, SQLiteDriver, StorageError

from .support import Invoice
from .test_processes import config_for, dispatch, read_log, start_worker, stats_of
from .worker_process import Numbered


@pytest.mark.realtime
def test_worker_processes_with_a_tiny_busy_timeout_run_every_job_exactly_once(tmp_path: Path) -> None:
    config = config_for("sqlite", tmp_path, busy_timeout=0.001, lease_time=30)
    log = tmp_path / "runs.log"
    n = 3000
    dispatch(config, [Numbered(i) for i in range(n)])
    workers = [start_worker(config, log, concurrency=2) for _ in range(4)]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err.decode()
    runs = read_log(log)
    done = Counter(n for kind, n, _ in runs if kind == "done")
    assert sorted(done) == list(range(n))  # none lost
    twice = {job: count for job, count in done.items() if count > 1}
    assert twice == {}, f"{len(twice)} jobs ran more than once with no crash"
    stats = stats_of(config)
    assert stats["queue_depth"] == 0 and stats["dead_ids"] == []


def hold_write_lock(path: Path) -> sqlite3.Connection:
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_a_settle_waits_on_the_clock_for_a_lock_and_gives_up_at_the_lease(tmp_path: Path) -> None:
    """Under virtual time: each retry is one synchronous busy wait of busy_timeout (real), and the
    backoff between them goes through the clock, so the lease bounds it in the queue's own time."""
    registry = JobRegistry()
    registry.register(Invoice)
    path = tmp_path / "q.sqlite3"
    with Simulation() as sim:
        driver = SQLiteDriver(
            DriverConfig(name="q", lease_time=timedelta(seconds=10)),
            path=path,
            busy_timeout=0,
            clock=sim.clock,
            registry=registry,
        )
        sim.run(driver.push(Invoice(1)))
        sim.run(driver.push(Invoice(2)))
        first = sim.run(driver.reserve(None, worker="w"))
        second = sim.run(driver.reserve(None, worker="w"))
        assert first is not None and second is not None

        other = hold_write_lock(path)
        start = sim.clock.time()

        async def release_later() -> None:
            await sim.clock.sleep(2)
            other.execute("COMMIT")

        async def ack_while_locked() -> Any:
            asyncio.get_running_loop().create_task(release_later())
            return await driver.ack_record(first)

        assert sim.run(ack_while_locked()) is True  # retried until the lock went away
        assert 2 <= sim.clock.time() - start < 10

        other = hold_write_lock(path)
        start = sim.clock.time()
        with pytest.raises(StorageError) as info:
            sim.run(driver.ack_record(second))
        other.execute("ROLLBACK")
        other.close()
        assert "locked" in str(info.value) and "damaged" not in str(info.value)
        assert sim.clock.time() <= second.reserved_until  # type: ignore[operator]
        assert sim.run(driver.ack_record(second)) is True
        sim.run(driver.dispose())
