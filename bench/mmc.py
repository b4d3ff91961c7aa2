"""M/M/c through the real queue, on virtual time: QueueManager + memory driver + worker, in a Simulation.

    .venv/bin/python bench/mmc.py --n 100000 --seed 1 [--c 4] [--rho 0.9] [--mu 1] [--mode slots]

The model is the one of the SimPy peer (``/work/shared/bench/peers/simpy_mmc.py``): Poisson arrivals
at lambda = rho*c*mu, exponential service at mu, c servers, one FIFO queue, N customers, one
``random.Random(seed)``. Here an arrival is a coroutine spawned on the simulation that dispatches a
job carrying its service time (drawn at arrival) and then ``await asyncio.sleep(expovariate(lambda))``;
the servers are the worker's slots (``--mode slots``: one worker with ``concurrency=c``, the default)
or c workers with ``concurrency=1`` (``--mode workers``); a job's ``handle()`` is
``await asyncio.sleep(service)``. The memory driver's heap orders jobs by ``(available_at, seq)``, so
the queue is FIFO, and an idle slot is woken at the instant of a dispatch.

Wait in queue per customer = time of its STARTED event - time of its DISPATCHED event, read from the
event stream (``qm.subscribe``). Prints one JSON line:

  wall_s                 wall time of ``sim.run_until_idle()`` only (imports, model build, the worker
                         start and the analysis afterwards are excluded), as the peer times env.run()
  customers_per_s        N / wall_s;  customer_events_per_s = 2N / wall_s (arrival + departure,
                         the peers' library-neutral count)
  wq_sim, wq_sim_warm    mean wait over all N, and without the first 10 % (warm-up)
  wq_bm, wq_bm_ci95      batch-means estimate (10 % warm-up dropped, 20 batches) and its 95 % half-width;
                         erlang_in_ci says whether Erlang C lies inside
  wq_erlang, wq_rel_err  Erlang C, and wq_sim / Erlang C - 1
  fifo_violations        customers that started before one that arrived earlier (0 for FIFO)
  path_max_abs_diff      largest |wait - exact wait| over all customers, the exact waits computed
                         from the same arrival and service times by the FIFO M/M/c recursion
                         (Kiefer-Wolfowitz). ~0 means the queue ran exactly the M/M/c sample path.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import json
import os
import platform
import random
import statistics
import time
from typing import Any

from erlang import batch_means_ci95, mmc_wq

from khadem_lab import EventKind, QueueEvent, QueueJob, QueueManager, Simulation, Worker


class Customer(QueueJob):
    """One customer: its service takes ``service`` virtual seconds."""

    def __init__(self, service: float) -> None:
        self.service = service

    async def handle(self) -> None:
        await asyncio.sleep(self.service)


def exact_waits(arrivals: list[float], services: list[float], c: int) -> list[float]:
    """Waits in queue of FIFO M/M/c for the given arrival times and service times (Kiefer-Wolfowitz:
    each customer takes the server that frees first), in the same float arithmetic as the loop."""
    free = [arrivals[0]] * c if arrivals else []
    waits = []
    for arrive, service in zip(arrivals, services, strict=True):
        start = max(arrive, heapq.heappop(free))
        waits.append(start - arrive)
        heapq.heappush(free, start + service)
    return waits


def build(
    sim: Simulation,
    qm: QueueManager,
    n: int,
    seed: int,
    c: int,
    rho: float,
    mu: float,
    mode: str,
    services: list[float],
) -> list[Worker]:
    """The model on ``sim``: the workers (started) and the arrivals (spawned); each customer's
    service time is appended to ``services`` at its arrival."""
    lam = rho * c * mu
    rng = random.Random(seed)
    expo = rng.expovariate
    sleep = asyncio.sleep
    dispatch = qm.dispatch
    record_service = services.append

    async def arrivals() -> None:
        for _ in range(n):
            service = expo(mu)
            record_service(service)
            await dispatch(Customer(service))
            await sleep(expo(lam))

    if mode == "slots":
        workers = [sim.run(qm.start_worker(max_jobs=n, concurrency=c, run_in_background=True))]
    elif mode == "workers":
        workers = [sim.run(qm.start_worker(run_in_background=True)) for _ in range(c)]
    else:
        raise SystemExit(f"unknown --mode {mode!r}")
    sim.spawn(arrivals(), name="arrivals")
    return workers


def run_quiet(n: int, seed: int, c: int = 4, rho: float = 0.9, mu: float = 1.0) -> float:
    """The same run with nobody listening to events (so none is built): the wall time of
    ``sim.run_until_idle()``. For bench/instructions.py (what the event recording costs)."""
    sim = Simulation(seed=seed)
    qm = QueueManager(clock=sim.clock)
    workers = build(sim, qm, n, seed, c, rho, mu, "slots", [])
    t0 = time.perf_counter()
    sim.run_until_idle()
    wall = time.perf_counter() - t0
    sim.run(qm.stop_workers())
    sim.close()
    if sum(w.stats.completed for w in workers) != n:
        raise SystemExit(f"only some of {n} customers were served")
    return wall


def run(
    n: int, seed: int, c: int = 4, rho: float = 0.9, mu: float = 1.0, mode: str = "slots"
) -> dict[str, Any]:
    sim = Simulation(seed=seed)
    qm = QueueManager(clock=sim.clock)
    dispatched: dict[str, float] = {}
    started: dict[str, float] = {}
    start_order: list[str] = []
    services: list[float] = []
    is_dispatched, is_started = EventKind.DISPATCHED, EventKind.STARTED

    def collect(event: QueueEvent) -> None:
        kind = event.kind
        if kind is is_dispatched:
            dispatched[event.job_id] = event.time
        elif kind is is_started:
            started[event.job_id] = event.time
            start_order.append(event.job_id)

    qm.subscribe(collect, kinds=(EventKind.DISPATCHED, EventKind.STARTED))
    workers = build(sim, qm, n, seed, c, rho, mu, mode, services)

    t0 = time.perf_counter()
    sim.run_until_idle()
    wall = time.perf_counter() - t0

    sim_time = sim.elapsed.total_seconds()
    sim.run(qm.stop_workers())
    sim.close()
    completed = sum(w.stats.completed for w in workers)
    if completed != n or len(started) != n:
        raise SystemExit(f"only {completed} of {n} customers were served")
    order = list(dispatched)  # dispatch order = arrival order
    waits = [started[i] - dispatched[i] for i in order]
    rank = {job_id: k for k, job_id in enumerate(order)}
    fifo_violations = sum(1 for a, b in itertools.pairwise(start_order) if rank[b] < rank[a])
    exact = exact_waits([dispatched[i] for i in order], services, c)
    path_diff = max(abs(w - x) for w, x in zip(waits, exact, strict=True))
    wq = statistics.fmean(waits)
    warm = waits[n // 10 :]
    wq_e = mmc_wq(rho * c * mu, mu, c)
    bm, ci = batch_means_ci95(waits)
    import khadem_lab

    return {
        "bench": "khadem_mmc",
        "n": n,
        "c": c,
        "rho": rho,
        "mu": mu,
        "seed": seed,
        "mode": mode,
        "wall_s": round(wall, 4),
        "customers_per_s": round(n / wall, 1),
        "customer_events_per_s": round(2 * n / wall, 1),
        "sim_time": round(sim_time, 2),
        "wq_sim": round(wq, 4),
        "wq_sim_warm": round(statistics.fmean(warm), 4),
        "wq_bm": round(bm, 4),
        "wq_bm_ci95": round(ci, 4),
        "erlang_in_ci": abs(bm - wq_e) <= ci,
        "wq_erlang": round(wq_e, 4),
        "wq_rel_err": round(wq / wq_e - 1, 4),
        "fifo_violations": fifo_violations,
        "path_max_abs_diff": path_diff,
        "versions": {"khadem_lab": khadem_lab.__version__},
        "python": platform.python_version(),
        "loadavg1": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="customers")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--c", type=int, default=4, help="servers")
    p.add_argument("--rho", type=float, default=0.9, help="utilisation")
    p.add_argument("--mu", type=float, default=1.0, help="service rate")
    p.add_argument(
        "--mode",
        choices=("slots", "workers"),
        default="slots",
        help="slots: one worker with concurrency=c; workers: c workers",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="run_quiet: nobody listens to events; prints wall_s and the package measured only",
    )
    a = p.parse_args()
    if a.quiet:
        import khadem_lab

        wall = run_quiet(a.n, a.seed, a.c, a.rho, a.mu)
        print(
            json.dumps(
                {
                    "bench": "khadem_mmc_quiet",
                    "n": a.n,
                    "seed": a.seed,
                    "wall_s": round(wall, 4),
                    "package": os.path.dirname(khadem_lab.__file__),
                }
            ),
            flush=True,
        )
        return
    print(json.dumps(run(a.n, a.seed, a.c, a.rho, a.mu, a.mode)), flush=True)


if __name__ == "__main__":
    main()
