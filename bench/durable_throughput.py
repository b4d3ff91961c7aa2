"""Throughput of a durable driver (``sqlite`` or ``file``) on the real clock: no-op jobs, one process.

    .venv/bin/python bench/durable_throughput.py --driver sqlite --fsync dispatch --n 10000

``QueueManager(config)`` on ``SystemClock`` with one driver ``{"driver": D, "path": ..., "fsync":
F}`` and the other options at their defaults (``track_metrics`` on, so every lifecycle event is
built and published). Each phase uses a fresh temporary directory (``tempfile.mkdtemp``, on the
same ext4 disk as the peers' queues), deleted afterwards. The job is a registered dataclass
(``register_queue_jobs([NoopJob])``) with one int field, like the peers' small item; its
``handle()`` returns at once. Every stored job goes through JSON and the registry. Each phase is
timed by ``time.perf_counter()``; the job objects are built before the clock starts.

  A. ``await qm.dispatch(job)`` N times, one by one             -> enqueue_rps
     then ``await qm.start_worker(max_jobs=N)`` drains them      -> process_rps
     N / (t_enqueue + t_process)                                 -> enqueue_process_rps
  B. (a fresh directory and manager) ``await qm.dispatch_batch(chunk)`` for chunks of --batch
     (default 100) jobs                                          -> batch_enqueue_rps
     then the same worker drains them                            -> batch_process_rps
     N / (t_batch + t_process)                                   -> batch_enqueue_process_rps

``enqueue_process_rps`` is the figure comparable to persist-queue's ``put_get_rps`` (N puts then N
gets, N / total time), ``process_rps`` to Huey's ``process_rps`` (one worker from its start until
the N-th job ran). After each drain the queue must be empty and N jobs completed. Prints one JSON
line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import NoopJob

import khadem_lab
from khadem_lab import QueueManager


def make_manager(driver: str, fsync: str, directory: Path) -> QueueManager:
    path = directory / ("queue.sqlite3" if driver == "sqlite" else "queue")
    options: dict[str, Any] = {"driver": driver, "path": str(path), "fsync": fsync}
    qm = QueueManager({"queue": {"default": "bench", "drivers": {"bench": options}}})
    qm.load_from_config()
    return qm


async def drain(qm: QueueManager, n: int) -> float:
    """Time one worker draining the N queued jobs; check they all ran and the queue is empty."""
    t0 = time.perf_counter()
    worker = await qm.start_worker(max_jobs=n)
    seconds = time.perf_counter() - t0
    assert worker.stats.completed == n, worker.stats
    assert await qm.driver.size() == 0
    return seconds


async def measure(driver: str, fsync: str, n: int, batch: int, parent: str | None) -> dict[str, Any]:
    perf = time.perf_counter
    times: dict[str, float] = {}

    # A: dispatch one by one, then one worker drains the queue.
    directory = Path(tempfile.mkdtemp(prefix="khadem-durable-", dir=parent))
    try:
        qm = make_manager(driver, fsync, directory)
        jobs = [NoopJob(i) for i in range(n)]
        dispatch = qm.dispatch
        t0 = perf()
        for job in jobs:
            await dispatch(job)
        times["enqueue"] = perf() - t0
        times["process"] = await drain(qm, n)
        await qm.dispose()
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    # B: dispatch_batch in chunks, then the same drain.
    if not batch:
        return record(driver, fsync, n, batch, times)
    directory = Path(tempfile.mkdtemp(prefix="khadem-durable-", dir=parent))
    try:
        qm = make_manager(driver, fsync, directory)
        chunks = [[NoopJob(i) for i in range(s, min(s + batch, n))] for s in range(0, n, batch)]
        dispatch_batch = qm.dispatch_batch
        t0 = perf()
        for chunk in chunks:
            await dispatch_batch(chunk)
        times["batch_enqueue"] = perf() - t0
        times["batch_process"] = await drain(qm, n)
        await qm.dispose()
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    return record(driver, fsync, n, batch, times)


def record(driver: str, fsync: str, n: int, batch: int, times: dict[str, float]) -> dict[str, Any]:
    def rps(*phases: str) -> float | None:
        if not all(ph in times for ph in phases):
            return None
        return round(n / sum(times[ph] for ph in phases), 1)

    return {
        "bench": "khadem_durable",
        "driver": driver,
        "fsync": fsync,
        "n": n,
        "batch": batch,
        "enqueue_rps": rps("enqueue"),
        "process_rps": rps("process"),
        "enqueue_process_rps": rps("enqueue", "process"),
        "batch_enqueue_rps": rps("batch_enqueue"),
        "batch_process_rps": rps("batch_process"),
        "batch_enqueue_process_rps": rps("batch_enqueue", "batch_process"),
        **{f"{k}_s": round(v, 4) for k, v in times.items()},
        "versions": {"khadem_lab": khadem_lab.__version__},
        "python": platform.python_version(),
        "loadavg1": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--driver", choices=["sqlite", "file"], default="sqlite")
    p.add_argument("--fsync", default="dispatch", help="the driver's fsync option")
    p.add_argument("--n", type=int, default=10_000, help="jobs")
    p.add_argument(
        "--batch", type=int, default=100, help="jobs per dispatch_batch call in phase B (0: skip B)"
    )
    p.add_argument("--dir", default=None, help="parent of the temporary directories")
    a = p.parse_args()
    print(json.dumps(asyncio.run(measure(a.driver, a.fsync, a.n, a.batch, a.dir))), flush=True)


if __name__ == "__main__":
    main()
