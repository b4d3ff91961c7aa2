"""Jobs and helpers shared by the tests (no fixtures here; see conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from khadem_lab import QueueJob, Simulation

START = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """The virtual datetime ``seconds`` after the default simulation start."""
    return START + timedelta(seconds=seconds)


def elapsed(sim: Simulation) -> float:
    return sim.elapsed.total_seconds()


class SimpleJob(QueueJob):
    """The spec's SimpleJob: 10 ms of work, then an action."""

    def __init__(self, action: Callable[[], Any]) -> None:
        self.action = action

    async def handle(self) -> None:
        await asyncio.sleep(0.01)
        self.action()

    @property
    def display_name(self) -> str:
        return "Simple Test Job"


class RetryableJob(SimpleJob):
    """The spec's RetryableJob: the action may raise; five retries."""

    max_retries = 5
    retry_delay = timedelta(milliseconds=100)

    @property
    def display_name(self) -> str:
        return "Retryable Job"


@dataclass
class Recorded(QueueJob):
    """Appends (virtual seconds since START, name, attempt) to a shared list, after `work` seconds."""

    name: str
    work: float = 0.0
    fail_until: int = 0  # attempts up to this one fail
    runs: ClassVar[list[tuple[float, str, int]]] = []
    clock_of: ClassVar[list[Simulation]] = []
    extra: dict[str, Any] = field(default_factory=dict)

    async def handle(self) -> str:
        await asyncio.sleep(self.work)
        sim = Recorded.clock_of[-1]
        Recorded.runs.append((sim.elapsed.total_seconds(), self.name, self.attempt))
        if self.attempt <= self.fail_until:
            raise RuntimeError(f"{self.name} failed on attempt {self.attempt}")
        return f"{self.name} done"

    @classmethod
    def reset(cls, sim: Simulation) -> None:
        cls.runs = []
        cls.clock_of[:] = [sim]


@dataclass
class Invoice(QueueJob):
    """A job for the durable drivers' tests: fails when asked; one retry, 10 s later."""

    number: int
    fail: bool = False
    retry_delay = timedelta(seconds=10)
    max_retries = 1

    async def handle(self) -> None:
        if self.fail:
            raise RuntimeError(f"invoice {self.number} failed")
