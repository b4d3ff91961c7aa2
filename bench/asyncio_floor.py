"""The floor under bench/mmc.py: the same M/M/c with bare asyncio on khadem_lab's VirtualTimeLoop.

    .venv/bin/python bench/asyncio_floor.py --n 100000 --seed 1

No queue, no jobs, no events: c server tasks pop (arrival time, service) pairs from a deque and
``await asyncio.sleep(service)``; an arrival task appends and wakes one idle server, then
``await asyncio.sleep(expovariate(lambda))``, with the same draws as bench/mmc.py, so the waits are
the same. It takes the same number of event-loop iterations as the queue run, so wall_s here is
what asyncio itself costs; bench/mmc.py minus this is what khadem_lab's queue adds. Prints one JSON
line (wall_s, wq_sim).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import random
import statistics
import time

from khadem_lab.vloop import VirtualTimeLoop


def run(n: int, seed: int, c: int = 4, rho: float = 0.9, mu: float = 1.0) -> dict[str, object]:
    lam = rho * c * mu
    loop = VirtualTimeLoop(1_704_099_600.0)  # the Simulation's default start
    expo = random.Random(seed).expovariate
    queue: collections.deque[tuple[float, float]] = collections.deque()
    idle: collections.deque[asyncio.Future[None]] = collections.deque()
    waits: list[float] = []
    served = 0

    async def arrivals() -> None:
        for _ in range(n):
            queue.append((loop.time(), expo(mu)))
            if idle:
                idle.popleft().set_result(None)
            await asyncio.sleep(expo(lam))

    async def server() -> None:
        nonlocal served
        while served < n:
            if not queue:
                wakeup = loop.create_future()
                idle.append(wakeup)
                await wakeup
                continue
            arrived, service = queue.popleft()
            waits.append(loop.time() - arrived)
            served += 1
            await asyncio.sleep(service)
        while idle:  # let the other servers end
            idle.popleft().set_result(None)

    tasks = [loop.create_task(server()) for _ in range(c)]
    tasks.append(loop.create_task(arrivals()))
    t0 = time.perf_counter()
    loop.run_until(math.inf, jump_to_horizon=False)
    wall = time.perf_counter() - t0
    assert all(t.done() for t in tasks) and len(waits) == n
    loop.close()
    return {
        "bench": "asyncio_floor",
        "n": n,
        "seed": seed,
        "wall_s": round(wall, 4),
        "wq_sim": round(statistics.fmean(waits), 4),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    print(json.dumps(run(a.n, a.seed)), flush=True)


if __name__ == "__main__":
    main()
