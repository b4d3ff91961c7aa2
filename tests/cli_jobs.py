"""Job classes for the command-line tests (``khadem-lab work --jobs tests.cli_jobs``).

Each job appends ``start ID PID`` / ``done ID PID`` lines to the file ``log`` (one ``write`` per
line on an O_APPEND file, so lines from several processes never interleave). A job that must wait
waits for a file to appear (observable state the test controls), never for a fixed time.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from khadem_lab import QueueJob, register_queue_jobs


def note(log: str, line: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{line} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


@dataclass
class Note(QueueJob):
    """Writes its start and done lines; with ``wait_for``, waits until that file exists."""

    name: str
    log: str
    wait_for: str = ""

    async def handle(self) -> None:
        note(self.log, f"start {self.name}")
        while self.wait_for and not Path(self.wait_for).exists():
            await asyncio.sleep(0.02)
        note(self.log, f"done {self.name}")


@dataclass
class FailsUntil(QueueJob):
    """Fails (no retries) until the file ``fixed`` exists, then completes."""

    name: str
    log: str
    fixed: str
    max_retries = 0

    async def handle(self) -> None:
        if not Path(self.fixed).exists():
            raise ConnectionError(f"{self.name}: the service is down")
        note(self.log, f"done {self.name}")


register_queue_jobs([Note, FailsUntil])
