"""Make the README's lab pictures from a seeded run on the virtual clock.

    .venv/bin/python docs/make_pictures.py

Six jobs, some flaky, with retries, on two workers (khadem_lab's own manager, memory driver);
saves docs/lab-timeline.png (the timeline, one row per job) and docs/lab-dashboard.png (the
dashboard's plots as one figure). Same seed, same pictures.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from khadem_lab import EventLog, QueueJob, QueueManager, Simulation
from khadem_lab.backoff import Exponential
from khadem_lab.lab import plots
from khadem_lab.lab.widgets import QueueDashboard

HERE = Path(__file__).parent
CONFIG = {"queue": {"default": "memory", "drivers": {"memory": {"driver": "memory"}}}}


@dataclass
class SyncInvoice(QueueJob):
    """Calls a flaky accounting API: fails its first ``fails`` attempts; exponential backoff."""

    invoice: str
    fails: int
    max_retries = 3
    retry_delay = Exponential(base=timedelta(seconds=30), factor=2)

    async def handle(self) -> None:
        await asyncio.sleep(20)
        if self.attempt <= self.fails:
            raise ConnectionError("accounting API timeout")


@dataclass
class SendReceipt(QueueJob):
    """Quick, and never fails."""

    to: str

    async def handle(self) -> None:
        await asyncio.sleep(8)


def main() -> None:
    with Simulation(seed=0) as sim:
        qm = QueueManager(CONFIG, clock=sim.clock)
        qm.load_from_config()
        log = EventLog()
        qm.subscribe(log)

        async def scenario() -> None:
            await qm.dispatch_batch(
                [SyncInvoice("A-1", 0), SyncInvoice("A-2", 1), SyncInvoice("A-3", 2), SyncInvoice("A-4", 9)]
            )
            await qm.dispatch_batch([SendReceipt("ada"), SendReceipt("grace")], delay=timedelta(seconds=50))
            await qm.dispatch(SendReceipt("linus"), delay=timedelta(minutes=3))

        sim.run(scenario())
        dash = QueueDashboard(qm, sim, log)
        dash.start_worker(2, name="worker")
        dash.clock.advance(600)
        plots.timeline(log.events, by="job").savefig(HERE / "lab-timeline.png", dpi=100)
        dash.figure().savefig(HERE / "lab-dashboard.png", dpi=80)
        dash.stop_workers()
    print("wrote", HERE / "lab-timeline.png", "and", HERE / "lab-dashboard.png")


if __name__ == "__main__":
    main()
