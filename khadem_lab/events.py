"""Lifecycle events: every step of every job, stamped with (time, sequence).

Drivers and workers emit; metrics, the event log and the notebook panels subscribe. Nobody is
special-cased: a subscriber is any callable taking a :class:`QueueEvent`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Any, NamedTuple

from .clock import to_datetime

log = logging.getLogger(__name__)


class EventKind(StrEnum):
    """What happened to a job."""

    DISPATCHED = "dispatched"  # stored; ready now or delayed until `available_at`
    RESERVED = "reserved"  # a worker took it under a lease (attempt counted here)
    STARTED = "started"  # handle() began
    COMPLETED = "completed"  # handle() returned
    FAILED = "failed"  # handle() raised or timed out (one attempt)
    RETRY_SCHEDULED = "retry_scheduled"  # back to waiting until `available_at`
    DEAD_LETTERED = "dead_lettered"  # failed for good; in the dead-letter queue
    DISCARDED = "discarded"  # failed for good with use_dlq off: this event is its only trace
    LEASE_EXPIRED = "lease_expired"  # its worker vanished; delivered again (or dead-lettered)
    REQUEUED = "requeued"  # taken out of the dead-letter queue to run again
    PURGED = "purged"  # removed from the dead-letter queue

    def __str__(self) -> str:
        return self.value


class QueueEvent(NamedTuple):
    """One lifecycle step. Immutable; ``_asdict()`` gives a row for a table.

    (A NamedTuple rather than a frozen dataclass: several are made per job on the hot path, and a
    tuple is built four times faster.)
    """

    time: float  # seconds since the epoch, on the queue's clock
    seq: int  # tie-breaker: strictly increasing on one clock
    kind: EventKind
    job_id: str
    job_type: str
    queue: str
    attempt: int
    driver: str
    worker: str | None = None
    error: str | None = None
    available_at: float | None = None  # for dispatched / retry_scheduled / lease_expired
    duration: float | None = None  # for completed / failed: seconds handle() ran

    @property
    def at(self) -> Any:
        """``time`` as an aware UTC datetime."""
        return to_datetime(self.time)


Subscriber = Callable[[QueueEvent], object]


class EventBus:
    """Fan-out of events to subscribers, in subscription order."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber(event)`` for every event from now on; returns an unsubscribe function."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def emit(self, event: QueueEvent) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:  # a broken subscriber must not break the queue; it is logged
                log.exception("event subscriber %r failed on %s", subscriber, event.kind)

    def __bool__(self) -> bool:
        return bool(self._subscribers)


class EventLog:
    """A subscriber that keeps every event, in order: the history of a run."""

    def __init__(self, maxlen: int | None = None) -> None:
        self.events: list[QueueEvent] = []
        self.maxlen = maxlen

    def __call__(self, event: QueueEvent) -> None:
        self.events.append(event)
        if self.maxlen is not None and len(self.events) > self.maxlen:
            del self.events[0]

    def __iter__(self) -> Iterator[QueueEvent]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def of_kind(self, *kinds: EventKind) -> list[QueueEvent]:
        return [e for e in self.events if e.kind in kinds]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per event, with the time as an aware datetime (ready for pandas)."""
        return [{**e._asdict(), "at": e.at, "kind": e.kind.value} for e in self.events]

    def clear(self) -> None:
        self.events.clear()
