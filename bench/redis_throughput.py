"""Throughput of the Redis driver on the real clock: no-op jobs, one client process.

    .venv/bin/python bench/redis_throughput.py --url redis://127.0.0.1:6390/0 --n 10000

``QueueManager(config)`` on ``SystemClock`` with one driver ``{"driver": "redis", "url": URL,
"queue_name": Q}`` and the other options at their defaults (``track_metrics`` on, so every
lifecycle event is built and published). Q is fresh for every phase (``bench-PID-PHASE-RANDOM``),
and its keys (``khadem:Q:*``) are cleared at the end of the phase (``qm.driver.clear()``: the
driver deletes only its own keys, never ``FLUSHDB``). The job is a registered dataclass
(``register_queue_jobs([NoopJob])``) with one int field; its ``handle()`` returns at once. Every
stored job goes through JSON, a Lua script and the registry. Each phase is timed by
``time.perf_counter()``; the job objects are built before the clock starts.

  A. ``await qm.dispatch(job)`` N times, one by one          -> enqueue_rps
     then ``await qm.start_worker(max_jobs=N)`` drains them   -> process_rps
  B. (fresh queue) ``await qm.dispatch_batch(chunk)`` for chunks of --batch (default 1,000)
                                                              -> batch_rps
     then ``await qm.start_worker(max_jobs=N, concurrency=8)`` drains them -> process_c8_rps
  C. (fresh queue) one ``await qm.dispatch_batch(all N jobs)`` -> batch_all_rps
  D. (fresh queue) the same batch, then ``await qm.start_worker(max_jobs=N, prefetch=--prefetch)``
     (default 100: each reserve takes up to that many jobs in one pipelined round trip, and
     finished jobs are acked together)                      -> process_prefetch_rps

  E. (fresh queue) ``await qm.dispatch(job)`` from --senders (default 100) coroutines at once,
     each dispatching its share one by one                -> enqueue_c100_rps

``process_rps`` is the figure comparable to the peers' ``process_rps`` (one worker from its start
until the N-th job ran). After each drain the queue must be empty and N jobs completed.

``--count-commands`` (an untimed pass: the hooks cost time): per phase, the client's round trips
per job (``bench/redis_roundtrips.py``'s hook on redis-py: a script call, a plain command or a
pipeline each count one) and the commands the server ran per job, from ``INFO commandstats`` before
and after (this includes the commands run *inside* our Lua scripts; the INFO calls themselves are
subtracted). Only meaningful on a private server that nothing else uses. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import time
from collections import Counter
from typing import Any

import redis
from harness import NoopJob
from redis.utils import HIREDIS_AVAILABLE

import khadem_lab
from khadem_lab import QueueManager


def make_manager(url: str, phase: str) -> QueueManager:
    queue_name = f"bench-{os.getpid()}-{phase}-{secrets.token_hex(4)}"
    options: dict[str, Any] = {"driver": "redis", "url": url, "queue_name": queue_name}
    qm = QueueManager({"queue": {"default": "bench", "drivers": {"bench": options}}})
    qm.load_from_config()
    return qm


class Commands:
    """Deltas of ``INFO commandstats`` (calls per command) around a phase."""

    def __init__(self, url: str, enabled: bool) -> None:
        self.client = redis.Redis.from_url(url) if enabled else None
        self.before: dict[str, int] = {}
        self.trips: Counter[str] = Counter()
        self.trips_before: Counter[str] = Counter()
        if enabled:
            from redis_roundtrips import install

            self.trips = install()

    def _read(self) -> dict[str, int]:
        assert self.client is not None
        stats = self.client.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}

    def start(self) -> None:
        if self.client is not None:
            self.before = self._read()
            self.trips_before = Counter(self.trips)

    def stop(self, n: int) -> dict[str, Any] | None:
        if self.client is None:
            return None
        after = self._read()
        delta = {k: v - self.before.get(k, 0) for k, v in after.items() if v != self.before.get(k, 0)}
        delta["info"] = delta.get("info", 0) - 1  # our own INFO call
        delta = {k: v for k, v in sorted(delta.items()) if v}
        trips = Counter(self.trips)
        trips.subtract(self.trips_before)
        trips["info"] -= 1  # our own INFO call
        trips_by = {k: v for k, v in trips.most_common() if v}
        return {
            "round_trips": trips_by,
            "round_trips_per_job": round(sum(trips_by.values()) / n, 3),
            "server_commands": delta,
            "server_commands_per_job": round(sum(delta.values()) / n, 3),
        }


async def drain(qm: QueueManager, n: int, concurrency: int, prefetch: int = 1) -> float:
    """Time one worker draining the N queued jobs; check they all ran and the queue is empty."""
    t0 = time.perf_counter()
    worker = await qm.start_worker(max_jobs=n, concurrency=concurrency, prefetch=prefetch)
    seconds = time.perf_counter() - t0
    assert worker.stats.completed == n, worker.stats
    assert await qm.driver.size() == 0
    return seconds


async def measure(
    url: str, n: int, batch: int, count: bool, prefetch: int = 100, senders: int = 100
) -> dict[str, Any]:
    perf = time.perf_counter
    times: dict[str, float] = {}
    commands: dict[str, Any] = {}
    cmd = Commands(url, count)

    # A: dispatch one by one, then one worker (concurrency 1) drains the queue.
    qm = make_manager(url, "a")
    jobs = [NoopJob(i) for i in range(n)]
    dispatch = qm.dispatch
    cmd.start()
    t0 = perf()
    for job in jobs:
        await dispatch(job)
    times["enqueue"] = perf() - t0
    commands["enqueue"] = cmd.stop(n)
    cmd.start()
    times["process"] = await drain(qm, n, 1)
    commands["process"] = cmd.stop(n)
    await qm.driver.clear()
    await qm.dispose()

    # B: dispatch_batch in chunks of --batch, then a worker with concurrency 8.
    qm = make_manager(url, "b")
    chunks = [[NoopJob(i) for i in range(s, min(s + batch, n))] for s in range(0, n, batch)]
    dispatch_batch = qm.dispatch_batch
    cmd.start()
    t0 = perf()
    for chunk in chunks:
        await dispatch_batch(chunk)
    times["batch"] = perf() - t0
    commands["batch"] = cmd.stop(n)
    cmd.start()
    times["process_c8"] = await drain(qm, n, 8)
    commands["process_c8"] = cmd.stop(n)
    await qm.driver.clear()
    await qm.dispose()

    # C: one dispatch_batch of all N jobs (one script call).
    qm = make_manager(url, "c")
    jobs = [NoopJob(i) for i in range(n)]
    cmd.start()
    t0 = perf()
    await qm.dispatch_batch(jobs)
    times["batch_all"] = perf() - t0
    commands["batch_all"] = cmd.stop(n)
    assert await qm.driver.size() == n
    await qm.driver.clear()
    await qm.dispose()

    # D: the same batch, then one worker that prefetches.
    qm = make_manager(url, "d")
    await qm.dispatch_batch([NoopJob(i) for i in range(n)])
    cmd.start()
    times["process_prefetch"] = await drain(qm, n, 1, prefetch)
    commands["process_prefetch"] = cmd.stop(n)
    await qm.driver.clear()
    await qm.dispose()

    # E: dispatch one by one from many coroutines at once (an async web app's request handlers).
    qm = make_manager(url, "e")
    jobs = [NoopJob(i) for i in range(n)]
    dispatch = qm.dispatch

    async def sender(share: list[NoopJob]) -> None:
        for job in share:
            await dispatch(job)

    cmd.start()
    t0 = perf()
    await asyncio.gather(*(sender(jobs[k::senders]) for k in range(senders)))
    times["enqueue_c100"] = perf() - t0
    commands["enqueue_c100"] = cmd.stop(n)
    assert await qm.driver.size() == n
    await qm.driver.clear()
    await qm.dispose()

    def rps(phase: str) -> float:
        return round(n / times[phase], 1)

    return {
        "bench": "khadem_redis",
        "n": n,
        "batch": batch,
        "enqueue_rps": rps("enqueue"),
        "process_rps": rps("process"),
        "batch_rps": rps("batch"),
        "batch_all_rps": rps("batch_all"),
        "process_c8_rps": rps("process_c8"),
        "process_prefetch_rps": rps("process_prefetch"),
        "enqueue_c100_rps": rps("enqueue_c100"),
        "prefetch": prefetch,
        "senders": senders,
        **{f"{k}_s": round(v, 4) for k, v in times.items()},
        "commands": commands if count else None,
        "versions": {
            "khadem_lab": khadem_lab.__version__,
            "redis": redis.__version__,
            "hiredis_parser": HIREDIS_AVAILABLE,
        },
        "python": platform.python_version(),
        "loadavg1": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6390") + "/0")
    p.add_argument("--n", type=int, default=10_000, help="jobs")
    p.add_argument("--batch", type=int, default=1000, help="jobs per dispatch_batch call in phase B")
    p.add_argument("--prefetch", type=int, default=100, help="prefetch of the worker in phase D")
    p.add_argument("--senders", type=int, default=100, help="coroutines dispatching at once in phase E")
    p.add_argument("--count-commands", action="store_true", help="Redis commands per job (INFO)")
    p.add_argument("--info-url", help="where INFO commandstats is read (default --url)")
    a = p.parse_args()
    result = measure(a.url, a.n, a.batch, a.count_commands, a.prefetch, a.senders)
    print(json.dumps(asyncio.run(result)), flush=True)


if __name__ == "__main__":
    main()
