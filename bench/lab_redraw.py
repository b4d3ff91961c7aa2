"""How long the lab dashboard takes to redraw after a clock step that produced 10,000+ events.

    .venv/bin/python bench/lab_redraw.py [jobs]

Dispatches ``jobs`` (default 3,000) one-second jobs, a tenth of which fail once and retry, starts a
worker with concurrency 50, then times one dashboard step (advance + redraw) and one redraw alone,
printing the parts (frames, plots, PNG render, statistics). Real seconds, median of 5 redraws.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import timedelta

import matplotlib

matplotlib.use("Agg")

from khadem_lab import EventLog, QueueJob, QueueManager, Simulation
from khadem_lab.lab.widgets import QueueDashboard

CONFIG = {"queue": {"default": "memory", "drivers": {"memory": {"driver": "memory"}}}}


@dataclass
class Quick(QueueJob):
    n: int
    retry_delay = timedelta(seconds=5)

    async def handle(self) -> None:
        await asyncio.sleep(1)
        if self.n % 10 == 0 and self.attempt == 1:
            raise ConnectionError("flaky")


def main(jobs: int = 3000) -> None:
    with Simulation() as sim:
        qm = QueueManager(CONFIG, clock=sim.clock)
        qm.load_from_config()
        log = EventLog()
        qm.subscribe(log)
        dash = QueueDashboard(qm, sim, log)
        sim.run(qm.dispatch_batch([Quick(i) for i in range(jobs)]))
        dash.start_worker(50)
        started = time.perf_counter()
        produced = dash.clock.advance(3600)
        step = time.perf_counter() - started
        first = dict(dash.timings)
        redraws = []
        parts: dict[str, list[float]] = {}
        for _ in range(5):
            dash._drawn_at = None  # force a full redraw of the same history
            t0 = time.perf_counter()
            dash.refresh()
            redraws.append(time.perf_counter() - t0)
            for key, value in dash.timings.items():
                parts.setdefault(key, []).append(value)
        print(
            f"events in the step: {produced:,} (log {len(log):,}); attempts drawn from: {len(dash.frame):,}"
        )
        print(f"step (advance + redraw): {step:.3f} s; its redraw: {first['total']:.3f} s")
        print(f"redraw alone, median of 5: {statistics.median(redraws):.3f} s")
        print("  parts: " + ", ".join(f"{k} {statistics.median(v):.3f} s" for k, v in parts.items()))
        sim.run(qm.stop_workers())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
