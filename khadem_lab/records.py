"""What drivers store: job records, their statuses, and queue counts.

Storage sees records, not behaviour. A record carries everything the queue needs to schedule,
retry and dead-letter a job; the job's own data is its JSON ``payload``. In-process drivers may
also keep the live job object in ``job`` (never stored by persistent drivers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .job import QueueJob


#: The last error of a job dead-lettered because its worker vanished during its last attempt.
LEASE_EXPIRED_ERROR = "LeaseExpired: its worker stopped during the last attempt"


class JobStatus(StrEnum):
    """Where a job is in its life."""

    PENDING = "pending"  # waiting: ready now, or delayed until available_at
    RESERVED = "reserved"  # a worker holds it under a lease until reserved_until
    COMPLETED = "completed"  # handle() returned (kept only by drivers that keep history)
    DEAD = "dead"  # failed for good: in the dead-letter queue with its last error

    def __str__(self) -> str:
        return self.value


@dataclass(slots=True, eq=False)
class JobRecord:
    """One job in storage.

    Mutable on purpose: a driver updates its records in place on the hot path (reserve, ack,
    release); events and stats hand out immutable copies of what they need.
    """

    id: str
    type: str
    queue: str
    payload: dict[str, Any] | str | None  # str: stored bytes that are not a JSON object (kept to report)
    display_name: str
    max_retries: int
    timeout: float | None
    available_at: float
    created_at: float
    seq: int = 0
    attempts: int = 0
    status: JobStatus = JobStatus.PENDING
    reserved_until: float | None = None
    reserved_by: str | None = None
    last_error: str | None = None
    error_type: str | None = None
    failed_at: float | None = None
    job: QueueJob | None = field(default=None, repr=False)
    #: The payload's JSON text when the record was just built from a job (drivers that store text
    #: use it rather than encoding the payload again); None otherwise.
    payload_json: str | None = field(default=None, repr=False)

    @property
    def max_attempts(self) -> int:
        """First run plus retries."""
        return self.max_retries + 1

    def describe(self) -> str:
        """The job and its attempt, for a person: ``"Flaky (job 3, attempt 2)"``."""
        return f"{self.display_name} (job {self.id}, attempt {self.attempts})"

    def end_lease(self, now: float, *, dead: bool) -> None:
        """Its worker vanished and the lease ended by ``now``: back to pending, due ``now``, or,
        when ``dead`` (no attempt left), to the dead letters with :data:`LEASE_EXPIRED_ERROR`.
        The driver gives a pending record its new seq."""
        self.reserved_until = None
        self.reserved_by = None
        if dead:
            self.status = JobStatus.DEAD
            self.last_error = LEASE_EXPIRED_ERROR
            self.error_type = "LeaseExpired"
            self.failed_at = now
        else:
            self.status = JobStatus.PENDING
            self.available_at = now

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of everything but the live job object."""
        return {
            "id": self.id,
            "type": self.type,
            "queue": self.queue,
            "payload": self.payload,
            "display_name": self.display_name,
            "max_retries": self.max_retries,
            "timeout": self.timeout,
            "available_at": self.available_at,
            "created_at": self.created_at,
            "seq": self.seq,
            "attempts": self.attempts,
            "status": self.status.value,
            "reserved_until": self.reserved_until,
            "reserved_by": self.reserved_by,
            "last_error": self.last_error,
            "error_type": self.error_type,
            "failed_at": self.failed_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        values = dict(data)
        values["status"] = JobStatus(values.get("status", "pending"))
        return cls(**values)


class QueueCounts(NamedTuple):
    """How many jobs a driver holds, by state, at one instant."""

    ready: int
    delayed: int
    reserved: int

    @property
    def pending(self) -> int:
        return self.ready + self.delayed

    @property
    def depth(self) -> int:
        return self.ready + self.delayed + self.reserved
