"""Real worker processes on one durable queue: each job exactly once, and a crash drill with SIGKILL.

These tests are about real processes, so they run on the system clock; they are kept short.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from khadem_lab import QueueManager

from .conftest import REDIS_URL, redis_queue_name
from .worker_process import Numbered

SCRIPT = Path(__file__).with_name("worker_process.py")
DURABLE_DRIVERS = ["sqlite", "file", "redis"]

pytestmark = pytest.mark.realtime


def config_for(kind: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"driver": kind, "poll_interval": 0.05, **extra}
    if kind == "redis":  # a fresh key prefix per test, deleted at its teardown
        entry.update(url=REDIS_URL, queue_name=redis_queue_name(tmp_path.name[:20]))
    else:
        entry["path"] = str(tmp_path / ("queue.sqlite3" if kind == "sqlite" else "queue"))
    return {"queue": {"default": "q", "drivers": {"q": entry}}}


def dispatch(config: dict[str, Any], jobs: list[Numbered]) -> None:
    async def run() -> None:
        qm = QueueManager(config)
        qm.load_from_config()
        for start in range(0, len(jobs), 500):
            await qm.dispatch_batch(jobs[start : start + 500])
        await qm.dispose()

    asyncio.run(run())


def start_worker(
    config: dict[str, Any], log: Path, concurrency: int = 1, prefetch: int = 1
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), json.dumps(config), str(log), str(concurrency), str(prefetch)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for_workers_at_work(
    workers: list[subprocess.Popen[bytes]], log: Path, timeout: float = 120
) -> list[subprocess.Popen[bytes]]:
    """The live workers that have started a job, waiting (polling the log) until there is one;
    empty once every worker has exited (the queue is done)."""
    deadline = time.monotonic() + timeout
    while True:
        started = {pid for kind, _, pid in read_log(log) if kind == "start"}
        at_work = [w for w in workers if w.pid in started and w.poll() is None]
        if at_work or all(w.poll() is not None for w in workers):
            return at_work
        if time.monotonic() > deadline:
            assert at_work, "no worker started a job"
            return at_work
        time.sleep(0.02)


def read_log(log: Path) -> list[tuple[str, int, int]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [(kind, int(n), int(pid)) for kind, n, pid in (line.split() for line in lines)]


def stats_of(config: dict[str, Any]) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        qm = QueueManager(config)
        qm.load_from_config()
        stats = await qm.driver.get_stats()
        stats["dead_ids"] = [d.payload["n"] for d in await qm.driver.dead_letters.list()]  # type: ignore[index]
        await qm.dispose()
        return stats

    return asyncio.run(run())


@pytest.mark.parametrize("prefetch", [1, 20])
@pytest.mark.parametrize("kind", DURABLE_DRIVERS)
def test_four_worker_processes_run_each_of_10000_jobs_exactly_once(
    kind: str, prefetch: int, tmp_path: Path
) -> None:
    config = config_for(kind, tmp_path)
    log = tmp_path / "runs.log"
    n = 10_000
    dispatch(config, [Numbered(i) for i in range(n)])

    workers = [start_worker(config, log, prefetch=prefetch) for _ in range(4)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err.decode()

    runs = read_log(log)
    done = Counter(n for kind_, n, _ in runs if kind_ == "done")
    assert sorted(done) == list(range(n))  # none lost
    assert set(done.values()) == {1}  # none run twice
    assert len({pid for _, _, pid in runs}) == 4  # all four took part
    stats = stats_of(config)
    assert stats["queue_depth"] == 0 and stats["dead_ids"] == []


@pytest.mark.parametrize("prefetch", [1, 20])
@pytest.mark.parametrize("kind", DURABLE_DRIVERS)
def test_crash_drill_sigkill_loses_nothing(kind: str, prefetch: int, tmp_path: Path) -> None:
    """Workers are killed with SIGKILL at random moments and replaced. Afterwards every job has
    completed or is dead-lettered, and a job ran more than once only if a killed worker had it."""
    # A short lease brings killed workers' jobs back soon. A live worker keeps its jobs however
    # slowly a loaded machine runs them: its heartbeat renews their leases (every lease_time / 6),
    # so only a worker whose event loop gets no CPU for half a lease (0.25 s) could lose one.
    config = config_for(kind, tmp_path, lease_time=0.5, max_retries=5)
    log = tmp_path / "runs.log"
    n = 1_500
    dispatch(config, [Numbered(i, work=0.002) for i in range(n)])
    rng = random.Random(7)

    killed: set[int] = set()
    workers = [start_worker(config, log, prefetch=prefetch) for _ in range(4)]
    for _ in range(8):  # eight kills, each at a random moment, each victim replaced
        time.sleep(rng.uniform(0.1, 0.4))
        # the victim is a worker at work (it has started a job), however slowly the machine runs
        at_work = _wait_for_workers_at_work(workers, log)
        if not at_work:  # the queue is done: every worker has exited
            break
        victim = at_work[rng.randrange(len(at_work))]
        workers.remove(victim)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        killed.add(victim.pid)
        workers.append(start_worker(config, log, prefetch=prefetch))
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err.decode()

    runs = read_log(log)
    stats = stats_of(config)
    done = {n for kind_, n, _ in runs if kind_ == "done"}
    dead = set(stats["dead_ids"])
    assert done | dead == set(range(n))  # none lost
    assert stats["queue_depth"] == 0
    starts: dict[int, list[int]] = defaultdict(list)
    for kind_, job, pid in runs:
        if kind_ == "start":
            starts[job].append(pid)
    for job, pids in starts.items():
        by_killed = sum(1 for pid in pids if pid in killed)
        assert len(pids) - 1 <= by_killed, (
            f"job {job} ran {len(pids)} times, only {by_killed} by killed workers"
        )
    assert killed & {pid for pids in starts.values() for pid in pids}  # the kills did hit workers at work
