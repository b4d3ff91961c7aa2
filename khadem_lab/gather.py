"""One reserve for the slots of a worker that want a job at the same moment.

A worker with ``concurrency=n`` on a remote store (Redis on the system clock) would make one round
trip per slot per job: n slots that finish their jobs together then ask the server n times, one
after another, for one job each. :class:`ReserveGather` collects the slots that ask within one
event-loop iteration and makes one :meth:`~khadem_lab.drivers.base.BaseQueueDriver.reserve_each`
call for all of them, carrying every ack they deferred. Each slot still gets at most one job (no
job is reserved beyond the slots waiting, which is what prefetch would do), reserved in its own
name, and a failure reaches every slot of the call, as its own reserve's would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .drivers.base import BaseQueueDriver
    from .records import JobRecord


#: A slot waiting for a job: its name, the acks it deferred, the future its job is handed to.
_Taker = tuple[str, list["JobRecord"], "asyncio.Future[JobRecord | None]"]


class ReserveGather:
    """The reserves of one worker's slots, gathered per event-loop iteration into one driver call."""

    def __init__(self, driver: BaseQueueDriver, queues: Sequence[str] | None) -> None:
        self.driver = driver
        self.queues = queues
        self._waiting: list[_Taker] = []
        self._calls: set[asyncio.Task[None]] = set()  # held, so a call in flight is not collected

    async def take(self, worker: str, acks: Sequence[JobRecord]) -> JobRecord | None:
        """A job for the slot ``worker`` (None if none is available), after ``acks`` are sent.
        The call is made in the next loop iteration, for every slot that asked by then."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[JobRecord | None] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._send)  # after the slots already ready in this iteration ran
        self._waiting.append((worker, list(acks), future))
        return await future

    def _send(self) -> None:
        batch, self._waiting = self._waiting, []
        call = asyncio.ensure_future(self._reserve(batch))
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)

    async def _reserve(self, batch: list[_Taker]) -> None:
        try:
            taken = await self.driver.reserve_each(self.queues, [(worker, acks) for worker, acks, _ in batch])
        except BaseException as exc:  # every slot of the call sees it (and backs off), as its own reserve's
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        # A slot cancelled meanwhile (a stop that does not wait) leaves its job reserved: its lease
        # brings it back, as for a reserve cancelled in flight.
        for (_, _, future), record in zip(batch, taken, strict=True):
            if not future.done():
                future.set_result(record)
