"""The headless demo: a small shop's background jobs on the virtual clock.

``python -m khadem_lab demo`` prints what ran when, then the queue statistics. Everything runs on
simulated time, so two runs with the same seed print the same lines.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

from .backoff import Exponential
from .clock import to_datetime
from .errors import PermanentFailure
from .events import EventKind, EventLog, QueueEvent
from .job import QueueJob
from .manager import QueueManager
from .simulation import Simulation

CONFIG = {
    "queue": {
        "default": "memory",
        "drivers": {"memory": {"driver": "memory", "track_metrics": True, "use_dlq": True, "max_retries": 3}},
    }
}


@dataclass
class SendWelcomeEmail(QueueJob):
    """Sending mail takes a second or two."""

    user: str
    rng: ClassVar[random.Random] = random.Random(0)

    async def handle(self) -> None:
        await asyncio.sleep(round(self.rng.uniform(1, 2), 1))


@dataclass
class ProcessPayment(QueueJob):
    """The gateway times out on the first tries; exponential backoff spaces the retries."""

    order_id: str
    failures: int
    max_retries = 5
    retry_delay = Exponential(base=timedelta(seconds=30), factor=2)

    async def handle(self) -> None:
        await asyncio.sleep(2)
        if self.attempt <= self.failures:
            raise ConnectionError("payment gateway timeout")


@dataclass
class ImportCsv(QueueJob):
    """Bad data cannot be fixed by retrying: it fails for good at once."""

    filename: str

    async def handle(self) -> None:
        await asyncio.sleep(1)
        if not self.filename.endswith(".csv"):
            raise PermanentFailure(f"{self.filename} is not a CSV file")


@dataclass
class GenerateReport(QueueJob):
    """A slow job with a timeout: the first run hangs and is cancelled."""

    name: str
    timeout = timedelta(seconds=30)
    retry_delay = timedelta(minutes=1)

    async def handle(self) -> None:
        await asyncio.sleep(3600 if self.attempt == 1 else 20)


def describe(event: QueueEvent) -> str:
    at = to_datetime(event.time).strftime("%H:%M:%S")
    text = f"{at}  {event.kind.value:<16} job {event.job_id:<2} {event.job_type:<17} try {event.attempt}"
    if event.worker:
        text += f"  on {event.worker}"
    delayed = event.available_at is not None and event.available_at > event.time
    if event.kind in (EventKind.RETRY_SCHEDULED, EventKind.DISPATCHED) and delayed:
        assert event.available_at is not None
        text += f"  due {to_datetime(event.available_at):%H:%M:%S}"
    if event.error and event.kind is not EventKind.RETRY_SCHEDULED:
        text += f"  ({event.error})"
    return text


async def scenario(qm: QueueManager) -> Any:
    await qm.dispatch_batch([SendWelcomeEmail("ada"), SendWelcomeEmail("grace")])
    await qm.dispatch(ProcessPayment("order-17", failures=3))
    await qm.dispatch(ImportCsv("prices.xlsx"))
    await qm.dispatch(GenerateReport("daily"), delay=timedelta(minutes=5))
    await qm.dispatch(SendWelcomeEmail("linus"), delay=timedelta(minutes=2))
    return await qm.start_worker(run_in_background=True, concurrency=2, name="worker")


def run(seed: int = 0, minutes: float = 15) -> list[str]:
    """Run the scenario for ``minutes`` of virtual time; return the printed lines."""
    SendWelcomeEmail.rng.seed(seed)
    lines: list[str] = []
    with Simulation(seed=seed) as sim:
        qm = QueueManager(CONFIG, clock=sim.clock)
        qm.load_from_config()
        log = EventLog()
        qm.subscribe(log)
        worker = sim.run(scenario(qm))
        sim.advance(minutes=minutes)
        lines.append(
            f"What ran when (virtual time, {minutes:g} minutes from {sim.start:%Y-%m-%d %H:%M} UTC):"
        )
        lines.extend("  " + describe(e) for e in log if e.kind is not EventKind.RESERVED)
        stats = sim.run(qm.driver.get_stats())
        sim.run(worker.stop())
        dead = sim.run(qm.driver.dead_letters.list())
    metrics = stats["metrics"]
    lines.append("")
    lines.append("Statistics (await qm.driver.get_stats()):")
    for key in (
        "driver_name",
        "queue_depth",
        "processing_count",
        "pending_count",
        "ready_jobs",
        "delayed_jobs",
    ):
        lines.append(f"  {key:<18} {stats[key]}")
    for key in ("jobs_queued", "jobs_completed", "jobs_failed", "jobs_retried", "attempts_failed"):
        lines.append(f"  {key:<18} {metrics[key]}")
    lines.append(f"  {'success_rate':<18} {metrics['success_rate'] * 100:.1f}%")
    lines.append(f"  {'jobs_by_type':<18} {metrics['jobs_by_type']}")
    lines.append(f"  {'average_duration':<18} {metrics['average_duration']:.2f} s")
    lines.append("")
    lines.append(f"Dead-letter queue ({stats['dlq']['total_jobs']} jobs):")
    lines.extend(f"  job {d.id} {d.type} after {d.attempts} attempt(s): {d.error}" for d in dead)
    return lines


def main(seed: int = 0, minutes: float = 15) -> None:
    print("\n".join(run(seed, minutes)))
