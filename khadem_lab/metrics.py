"""QueueMetrics: counters kept by subscribing to a driver's lifecycle events."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .events import EventKind, QueueEvent

_DISPATCHED = EventKind.DISPATCHED
_STARTED, _COMPLETED = EventKind.STARTED, EventKind.COMPLETED


class QueueMetrics:
    """Counts what happened on one driver. Subscribe it to the driver's event bus (drivers with
    ``track_metrics`` do it themselves); read :meth:`snapshot`; :meth:`reset` starts over.

    ``jobs_failed`` counts jobs that failed for good (dead-lettered or discarded);
    ``attempts_failed`` counts every failed attempt, retried or not.
    """

    #: The kinds of event the counters use (what a driver subscribes it to).
    KINDS = frozenset(EventKind) - {EventKind.RESERVED, EventKind.REQUEUED, EventKind.PURGED}

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.jobs_queued = 0
        self.jobs_started = 0
        self.jobs_completed = 0
        self.jobs_failed = 0
        self.attempts_failed = 0
        self.jobs_retried = 0
        self.jobs_dead_lettered = 0
        self.leases_expired = 0
        self.leases_lost = 0
        self.jobs_by_type: Counter[str] = Counter()
        self.completed_by_type: Counter[str] = Counter()
        self.failed_by_type: Counter[str] = Counter()
        self.total_duration = 0.0
        self.max_duration = 0.0

    def __call__(self, event: QueueEvent) -> None:
        self.tally_event(event.kind, event.job_type, event.duration)

    def tally_event(self, kind: EventKind, job_type: str, duration: float | None) -> None:
        """Count one event from the three things the counters read of it. (A driver whose only
        subscribers of a kind are counters calls this without building the event: see
        :attr:`EventBus.tallies <khadem_lab.events.EventBus.tallies>`.)"""
        if kind is _DISPATCHED:  # the hot kinds first, from module constants (no enum lookups)
            self.jobs_queued += 1
            self.jobs_by_type[job_type] += 1
        elif kind is _STARTED:
            self.jobs_started += 1
        elif kind is _COMPLETED:
            self.jobs_completed += 1
            self.completed_by_type[job_type] += 1
            if duration is not None:  # _add_duration, inlined for the hot kind
                self.total_duration += duration
                if duration > self.max_duration:
                    self.max_duration = duration
        elif kind is EventKind.FAILED:
            self.attempts_failed += 1
            self._add_duration(duration)
        elif kind is EventKind.RETRY_SCHEDULED:
            self.jobs_retried += 1
        elif kind is EventKind.DEAD_LETTERED or kind is EventKind.DISCARDED:
            self.jobs_failed += 1
            self.failed_by_type[job_type] += 1
            if kind is EventKind.DEAD_LETTERED:
                self.jobs_dead_lettered += 1
        elif kind is EventKind.LEASE_EXPIRED:
            self.leases_expired += 1
        elif kind is EventKind.LEASE_LOST:
            self.leases_lost += 1

    def _add_duration(self, duration: float | None) -> None:
        if duration is not None:
            self.total_duration += duration
            if duration > self.max_duration:
                self.max_duration = duration

    @property
    def success_rate(self) -> float:
        """Completed / (completed + failed for good), 0.0-1.0; 1.0 while nothing has finished."""
        finished = self.jobs_completed + self.jobs_failed
        return self.jobs_completed / finished if finished else 1.0

    def snapshot(self) -> dict[str, Any]:
        """The spec's metric keys plus retries and durations, as plain data."""
        runs = self.jobs_completed + self.attempts_failed
        return {
            "jobs_queued": self.jobs_queued,
            "jobs_started": self.jobs_started,
            "jobs_completed": self.jobs_completed,
            "jobs_failed": self.jobs_failed,
            "success_rate": self.success_rate,
            "jobs_by_type": dict(sorted(self.jobs_by_type.items())),
            "completed_by_type": dict(sorted(self.completed_by_type.items())),
            "failed_by_type": dict(sorted(self.failed_by_type.items())),
            "attempts_failed": self.attempts_failed,
            "jobs_retried": self.jobs_retried,
            "jobs_dead_lettered": self.jobs_dead_lettered,
            "leases_expired": self.leases_expired,
            "leases_lost": self.leases_lost,
            "total_duration": self.total_duration,
            "average_duration": self.total_duration / runs if runs else 0.0,
            "max_duration": self.max_duration,
        }
