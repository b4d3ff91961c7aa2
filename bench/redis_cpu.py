"""Load-independent costs of the Redis driver's worker: client CPU, round trips and server commands per job.

    .venv/bin/python bench/redis_cpu.py --port 7301 --n 2000            # all modes
    .venv/bin/python bench/redis_cpu.py --port 7301 --mode c8 --profile  # cProfile of one drain

Wall seconds on a shared machine say little; these do not depend on the load. For each mode, on a
private redis-server it starts (``--save '' --appendonly no``, port ``--port``, never 6379): one
``dispatch_batch`` of N no-op jobs, then one worker drains them (``start_worker(max_jobs=N)``,
``concurrency`` and ``prefetch`` as the mode says) while we measure

- client CPU: ``time.process_time()`` of this process around the drain, per job, in microseconds;
- round trips: ``bench/redis_roundtrips.py``'s hook on redis-py (a script call, a command or a
  pipeline counts one), per job;
- server commands: the ``INFO commandstats`` deltas (commands run inside Lua scripts included, our
  own INFO calls subtracted), per job.

``--profile`` prints the 30 costliest functions (cumulative) of the drain. Prints one JSON line per
mode. Modes: ``c1`` (default worker), ``c8`` (concurrency 8), ``prefetch`` (prefetch 100).
``--delay-ms D``: the worker reaches the server through ``bench/redis_proxy.py`` (port + 1), which
adds D ms each way (jobs/s there shows how much of a round trip the client's work overlaps).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
from harness import NoopJob
from redis_roundtrips import install
from redis_throughput import make_manager

MODES = {"c1": (1, 1), "c8": (8, 1), "prefetch": (1, 100)}


def commandstats(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


async def one_mode(url: str, mode: str, n: int, profile: bool, trips: Any) -> dict[str, Any]:
    concurrency, prefetch = MODES[mode]
    qm = make_manager(url, mode)
    await qm.dispatch_batch([NoopJob(i) for i in range(n)])
    client = redis.Redis.from_url(url)
    before, trips_before = commandstats(client), sum(trips.values())
    profiler = cProfile.Profile(time.process_time) if profile else None  # CPU time, not wall
    cpu0, wall0 = time.process_time(), time.perf_counter()
    use0 = resource.getrusage(resource.RUSAGE_SELF)
    if profiler is not None:
        profiler.enable()
    worker = await qm.start_worker(max_jobs=n, concurrency=concurrency, prefetch=prefetch)
    if profiler is not None:
        profiler.disable()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    use1 = resource.getrusage(resource.RUSAGE_SELF)
    round_trips = sum(trips.values()) - trips_before
    after = commandstats(client)
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    delta["info"] = delta.get("info", 0) - 1
    delta = {k: v for k, v in sorted(delta.items(), key=lambda kv: -kv[1]) if v}
    assert worker.stats.completed == n, worker.stats
    assert await qm.driver.size() == 0
    await qm.driver.clear()
    await qm.dispose()
    client.close()
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return {
        "mode": mode,
        "n": n,
        "cpu_us_per_job": round(cpu / n * 1e6, 1),
        "user_us_per_job": round((use1.ru_utime - use0.ru_utime) / n * 1e6, 1),
        "sys_us_per_job": round((use1.ru_stime - use0.ru_stime) / n * 1e6, 1),
        "round_trips_per_job": round(round_trips / n, 3),
        "server_commands_per_job": round(sum(delta.values()) / n, 2),
        "server_commands": delta,
        "jobs_per_s": round(n / wall, 1),
        "cpu_share": round(cpu / wall, 2),
        "profiled": profile,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=7301, help="private redis-server port (7300-7399)")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--mode", choices=[*MODES, "all"], default="all")
    p.add_argument("--profile", action="store_true")
    p.add_argument(
        "--delay-ms", type=float, default=0.0, help="via bench/redis_proxy.py on port+1, this much each way"
    )
    a = p.parse_args()
    if a.port == 6379:
        p.error("port 6379 is the shared server: use a private port")
    server = subprocess.Popen(
        ["redis-server", "--port", str(a.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{a.port}/0"
    proxy = None
    if a.delay_ms:
        here = Path(__file__).resolve().parent
        proxy = subprocess.Popen(
            [sys.executable, str(here / "redis_proxy.py"), "--listen", str(a.port + 1),
             "--target", f"127.0.0.1:{a.port}", "--delay-ms", str(a.delay_ms)],
        )  # fmt: skip
        url = f"redis://127.0.0.1:{a.port + 1}/0"
    try:
        probe = redis.Redis.from_url(url)
        for _ in range(200):
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        probe.close()
        trips = install()  # once: every round trip of this process counted from here on
        for mode in MODES if a.mode == "all" else [a.mode]:
            print(json.dumps(asyncio.run(one_mode(url, mode, a.n, a.profile, trips))), flush=True)
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait()
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
