"""``khadem-lab work``: a real worker process on file, SQLite and Redis queues.

Burst mode drains a queue and exits; SIGTERM lets the running job finish and releases the jobs
reserved but not started, so another worker takes them at once (long before their lease ends);
a second SIGTERM stops at once. Plus the worker features underneath, on virtual time.
"""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from khadem_lab import InMemoryDriver, QueueJob, QueueManager, Simulation

from .cli_jobs import Note
from .cli_support import dispatch, khadem, log_lines, start, stats, wait_until, write_config

DRIVERS = ["file", "sqlite", "redis"]


@pytest.mark.realtime
@pytest.mark.parametrize("kind", DRIVERS)
def test_a_burst_worker_drains_the_queue_and_exits(kind: str, tmp_path: Path) -> None:
    # Given 12 jobs on a durable queue
    config = write_config(tmp_path, kind)
    log = tmp_path / "jobs.log"
    dispatch(config, [Note(f"n{i}", str(log)) for i in range(12)])
    # When a burst worker runs
    done = khadem("work", str(config), "--jobs", "tests.cli_jobs", "--burst", "--concurrency", "2")
    # Then it ran each job once, logged one line per job, and exited 0 with the queue empty
    assert done.returncode == 0, done.stderr
    assert sorted(name for what, name, _ in log_lines(log) if what == "done") == sorted(
        f"n{i}" for i in range(12)
    )
    job_lines = [line for line in done.stderr.splitlines() if " completed in " in line]
    assert len(job_lines) == 12
    assert stats(config)["queue_depth"] == 0


@pytest.mark.realtime
def test_json_log_has_one_object_per_job_with_id_type_and_attempt(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite")
    ids = dispatch(config, [Note("a", str(tmp_path / "log")), Note("b", str(tmp_path / "log"))])
    done = khadem("work", str(config), "--jobs", "tests.cli_jobs", "--burst", "--log-format", "json")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]
    jobs = [r for r in records if r.get("event") == "completed"]
    assert [(r["job_id"], r["job_type"], r["attempt"], r["queue"]) for r in jobs] == [
        (ids[0], "Note", 1, "default"),
        (ids[1], "Note", 1, "default"),
    ]
    assert all(r["level"] == "INFO" and r["worker"].startswith("worker-") for r in jobs)


@pytest.mark.realtime
@pytest.mark.parametrize("kind", DRIVERS)
def test_sigterm_finishes_the_running_job_and_releases_the_prefetched_ones(kind: str, tmp_path: Path) -> None:
    # Given a worker that prefetched three jobs (a long lease: 600 s) and runs the first, which
    # waits until the test lets it finish
    config = write_config(tmp_path, kind, lease_time=600)
    log, go, err = tmp_path / "jobs.log", tmp_path / "go", tmp_path / "w1.log"
    dispatch(config, [Note("long", str(log), wait_for=str(go)), Note("q1", str(log)), Note("q2", str(log))])
    first = start("work", str(config), "--jobs", "tests.cli_jobs", "--prefetch", "3", stderr=err)
    try:
        wait_until(lambda: ("start", "long", first.pid) in log_lines(log), "the long job to start")
        assert stats(config)["processing_count"] == 3  # all three reserved by the first worker
        # When it gets SIGTERM
        first.send_signal(signal.SIGTERM)
        # Then the two it had not started are released at once: ready again, the long one still held
        wait_until(lambda: stats(config)["ready_jobs"] == 2, "the prefetched jobs to be released")
        assert stats(config)["processing_count"] == 1
        # and another worker takes them now, while the first one's lease still has minutes to run
        second = khadem("work", str(config), "--jobs", "tests.cli_jobs", "--burst")
        assert second.returncode == 0, second.stderr
        done = {name: pid for what, name, pid in log_lines(log) if what == "done"}
        assert set(done) == {"q1", "q2"}
        assert first.poll() is None  # still finishing its job
        # When the long job can finish, it does, in the first worker, which then exits 0
        go.touch()
        assert first.wait(timeout=120) == 0, err.read_text()
        done = {name: pid for what, name, pid in log_lines(log) if what == "done"}
        assert done["long"] == first.pid and done["q1"] != first.pid and done["q2"] != first.pid
        assert stats(config)["queue_depth"] == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


@pytest.mark.realtime
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_stops_at_once(signum: signal.Signals, tmp_path: Path) -> None:
    # Given a worker running a job that would never finish by itself, with a grace of an hour
    config = write_config(tmp_path, "sqlite")
    log, err = tmp_path / "jobs.log", tmp_path / "w.log"
    dispatch(config, [Note("stuck", str(log), wait_for=str(tmp_path / "never"))])
    worker = start("work", str(config), "--jobs", "tests.cli_jobs", "--grace", "3600", stderr=err)
    try:
        wait_until(lambda: ("start", "stuck", worker.pid) in log_lines(log), "the job to start")
        # When it gets the signal (and says it is stopping), then the signal again
        worker.send_signal(signum)
        wait_until(lambda: f"{signum.name}: stopping;" in err.read_text(), "the first signal to be handled")
        worker.send_signal(signum)
        # Then it exits at once with the "cut off" code, the job not done (it is still reserved:
        # its lease brings it back)
        assert worker.wait(timeout=120) == 6, err.read_text()
        assert ("done", "stuck", worker.pid) not in log_lines(log)
        assert f"second {signum.name}: stopping at once; 1 running job(s) cut off" in err.read_text()
        assert stats(config)["processing_count"] == 1
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


@pytest.mark.realtime
def test_the_end_of_the_grace_period_stops_at_once(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite")
    log, err = tmp_path / "jobs.log", tmp_path / "w.log"
    dispatch(config, [Note("stuck", str(log), wait_for=str(tmp_path / "never"))])
    worker = start("work", str(config), "--jobs", "tests.cli_jobs", "--grace", "0.2", stderr=err)
    try:
        wait_until(lambda: ("start", "stuck", worker.pid) in log_lines(log), "the job to start")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=120) == 6, err.read_text()
        assert "grace period over: stopping at once; 1 running job(s) cut off" in err.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


# -- the worker features underneath, on virtual time ---------------------------------------------------
def test_burst_worker_ends_when_no_job_is_ready_and_leaves_delayed_ones() -> None:
    with Simulation() as sim:
        qm = QueueManager(driver=InMemoryDriver(), clock=sim.clock)
        sim.run(qm.dispatch_batch([Note("a", "/dev/null"), Note("b", "/dev/null")]))
        sim.run(qm.dispatch(Note("later", "/dev/null"), delay=60))
        worker = sim.run(qm.start_worker(burst=True))
        assert worker.stats.completed == 2
        assert sim.run(qm.driver.get_stats())["delayed_jobs"] == 1
        assert sim.now() == sim.start  # it did not wait for the delayed one


def test_a_stopping_prefetching_worker_releases_the_jobs_it_has_not_started() -> None:
    # Given a worker that prefetched three jobs and runs the first, a 10-second one
    with Simulation() as sim:
        qm = QueueManager(driver=InMemoryDriver(), clock=sim.clock)
        sim.run(qm.dispatch_batch([Sleeper(10), Sleeper(1), Sleeper(1)]))
        worker = sim.run(qm.start_worker(run_in_background=True, prefetch=3, release_on_stop=True))
        sim.advance(seconds=2)
        assert sim.run(qm.driver.get_stats())["processing_count"] == 3
        # When it is stopped
        sim.run(worker.stop())
        # Then the running job finished, the two others are ready again at once for another worker
        assert sim.now() == sim.start + timedelta(seconds=10)
        assert worker.stats.completed == 1
        stats = sim.run(qm.driver.get_stats())
        assert (stats["ready_jobs"], stats["processing_count"]) == (2, 0)
        other = sim.run(qm.start_worker(burst=True))
        assert other.stats.completed == 2
        assert sim.now() == sim.start + timedelta(seconds=12)


@dataclass
class Sleeper(QueueJob):
    seconds: float

    async def handle(self) -> None:
        await asyncio.sleep(self.seconds)
