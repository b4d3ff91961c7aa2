"""Throughput of the memory driver on the real clock: no-op jobs, one process, one event loop.

    .venv/bin/python bench/memory_throughput.py --n 100000

``QueueManager()`` with its defaults (``SystemClock``, an in-memory driver registered on first use,
``track_metrics`` on, so every lifecycle event is built and published). The no-op job's ``handle()``
returns at once. Two fresh managers, each timed phase by ``time.perf_counter()``:

  A. ``await qm.dispatch(job)`` N times, one by one            -> dispatch_rps
     then ``await qm.start_worker(max_jobs=N)`` drains them     -> worker_rps
  B. ``await qm.dispatch_batch(jobs)`` (one call, N jobs)       -> dispatch_batch_rps
     then ``await qm.process()`` N times                        -> process_rps

Combined figures, N / (enqueue time + drain time):
  dispatch_plus_worker_rps    A: dispatch one by one + worker   (the headline "dispatch plus process")
  batch_plus_process_rps      B: dispatch_batch + process() loop
The job objects are built before the clock starts. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from typing import Any

import khadem_lab
from khadem_lab import QueueJob, QueueManager


class Noop(QueueJob):
    async def handle(self) -> None:
        return None


async def measure(n: int) -> dict[str, Any]:
    perf = time.perf_counter

    # A: dispatch one by one, then a worker drains the queue.
    qm = QueueManager()
    jobs = [Noop() for _ in range(n)]
    dispatch = qm.dispatch
    t0 = perf()
    for job in jobs:
        await dispatch(job)
    t1 = perf()
    worker = await qm.start_worker(max_jobs=n)
    t2 = perf()
    assert worker.stats.completed == n, worker.stats
    assert await qm.driver.size() == 0
    dispatch_s, worker_s = t1 - t0, t2 - t1
    await qm.dispose()

    # B: one dispatch_batch, then qm.process() one job at a time.
    qm = QueueManager()
    jobs = [Noop() for _ in range(n)]
    process = qm.process
    t0 = perf()
    await qm.dispatch_batch(jobs)
    t1 = perf()
    ran = 0
    for _ in range(n):
        ran += await process()
    t2 = perf()
    assert ran == n and not await process()
    batch_s, process_s = t1 - t0, t2 - t1
    await qm.dispose()

    return {
        "bench": "khadem_memory",
        "n": n,
        "dispatch_rps": round(n / dispatch_s, 1),
        "worker_rps": round(n / worker_s, 1),
        "dispatch_plus_worker_rps": round(n / (dispatch_s + worker_s), 1),
        "dispatch_batch_rps": round(n / batch_s, 1),
        "process_rps": round(n / process_s, 1),
        "batch_plus_process_rps": round(n / (batch_s + process_s), 1),
        "dispatch_s": round(dispatch_s, 4),
        "worker_s": round(worker_s, 4),
        "dispatch_batch_s": round(batch_s, 4),
        "process_s": round(process_s, 4),
        "versions": {"khadem_lab": khadem_lab.__version__},
        "python": platform.python_version(),
        "loadavg1": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="jobs")
    a = p.parse_args()
    print(json.dumps(asyncio.run(measure(a.n))), flush=True)


if __name__ == "__main__":
    main()
