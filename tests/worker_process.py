"""A real worker process for the multi-process tests of the durable drivers.

    python tests/worker_process.py CONFIG_JSON LOG_PATH [CONCURRENCY [PREFETCH]]

Builds a QueueManager from the config, works the default driver until the queue is empty (nothing
waiting, nothing reserved by anyone), then stops. Each job appends ``start N PID`` and ``done N PID``
lines to LOG_PATH (one ``write`` per line on an O_APPEND file, so lines from several processes never
interleave). Runs on the system clock: this is about real processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass

from khadem_lab import QueueJob, QueueManager, register_queue_jobs

LOG_FD = -1


def log(line: str) -> None:
    os.write(LOG_FD, f"{line}\n".encode())


@dataclass
class Numbered(QueueJob):
    """Job number ``n``; ``work`` seconds of real time between its start and done lines."""

    n: int
    work: float = 0.0

    async def handle(self) -> None:
        log(f"start {self.n} {os.getpid()}")
        if self.work:
            await asyncio.sleep(self.work)
        log(f"done {self.n} {os.getpid()}")


register_queue_jobs([Numbered])


async def work(config: dict[str, object], concurrency: int, prefetch: int) -> None:
    qm = QueueManager(config)
    qm.load_from_config()
    worker = await qm.start_worker(run_in_background=True, concurrency=concurrency, prefetch=prefetch)
    while True:
        await asyncio.sleep(0.05)
        if worker.busy == 0 and await qm.driver.size() == 0:
            break
    await worker.stop()
    await qm.dispose()


if __name__ == "__main__":
    LOG_FD = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    prefetch = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    asyncio.run(work(json.loads(sys.argv[1]), concurrency, prefetch))
