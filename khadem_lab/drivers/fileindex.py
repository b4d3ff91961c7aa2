"""The file driver's in-memory index of the stored jobs, and the one place journal lines are applied.

Every process keeps this index of the whole queue: a heap per queue by ``(available_at, seq)`` (as
in the memory driver), the reserved jobs with a heap of their lease ends, and the dead letters in
the order they died. Heap entries are checked when they reach the top (an entry whose job moved on
is dropped then), so an operation replayed from another process costs O(log n) like a local one.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from ..records import JobRecord, JobStatus
from .filelog import client_ids_from_json, record_from_json

Entry = tuple[float, int, str]  # (available_at or reserved_until, seq, job id)
Op = dict[str, Any]


def _items(entry: Op, key: str) -> list[Any]:
    value = entry[key]
    if not isinstance(value, list):
        raise ValueError(f"{key!r} must be a list")
    return value


def _number(entry: Op, key: str) -> float:
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key!r} must be a number")
    return float(value)


class JobIndex:
    """Pending, reserved and dead jobs of one storage directory, as this process last read them."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobRecord] = {}  # pending and reserved
        self.reserved: dict[str, JobRecord] = {}
        self.dead: dict[str, JobRecord] = {}  # in the order they died
        self.heaps: dict[str, list[Entry]] = {}
        self.heap_entries = 0
        self.leases: list[Entry] = []
        self.seq = 0  # the largest seq assigned
        #: Ids given to dispatch (job_id=): their job's fingerprint and until when they are remembered.
        self.client_ids: dict[str, tuple[str, float]] = {}

    def id_taken(self, job_id: str, now: float) -> str | None:
        """The fingerprint remembered with ``job_id`` ("" if unknown) if a job with it is stored
        or it is remembered at ``now``; None if it is free."""
        entry = self.client_ids.get(job_id)
        if entry is not None and (entry[1] > now or job_id in self.jobs or job_id in self.dead):
            return entry[0]
        if job_id in self.jobs or job_id in self.dead:
            return ""
        return None

    def live_client_ids(self, now: float) -> dict[str, tuple[str, float]]:
        """The remembered ids still worth keeping at ``now`` (for a snapshot)."""
        return {i: e for i, e in self.client_ids.items() if e[1] > now or i in self.jobs or i in self.dead}

    def put(self, record: JobRecord) -> None:
        """Store ``record`` under its id, wherever its status says, replacing what was there."""
        job_id = record.id
        self.jobs.pop(job_id, None)
        self.reserved.pop(job_id, None)
        self.dead.pop(job_id, None)
        if record.seq > self.seq:
            self.seq = record.seq
        status = record.status
        if status is JobStatus.PENDING:
            self.jobs[job_id] = record
            heap = self.heaps.get(record.queue)
            if heap is None:
                heap = self.heaps[record.queue] = []
            heapq.heappush(heap, (record.available_at, record.seq, job_id))
            self.heap_entries += 1
            if self.heap_entries > 1024 + 2 * len(self.jobs):
                self.rebuild_heaps()
        elif status is JobStatus.RESERVED:
            self.jobs[job_id] = record
            self.reserve(record)
        else:
            self.dead[job_id] = record

    def reserve(self, record: JobRecord) -> None:
        self.reserved[record.id] = record
        assert record.reserved_until is not None
        heapq.heappush(self.leases, (record.reserved_until, record.seq, record.id))
        if len(self.leases) > 64 + 2 * len(self.reserved):
            self.leases = [(r.reserved_until, r.seq, r.id) for r in self.reserved.values()]  # type: ignore[misc]
            heapq.heapify(self.leases)

    def rebuild_heaps(self) -> None:
        self.heaps = {}
        for record in self.jobs.values():
            if record.status is JobStatus.PENDING:
                self.heaps.setdefault(record.queue, []).append((record.available_at, record.seq, record.id))
        for heap in self.heaps.values():
            heapq.heapify(heap)
        self.heap_entries = sum(len(h) for h in self.heaps.values())

    def head(self, heap: list[Entry]) -> Entry | None:
        """The first entry of a queue's heap that is still a pending job (stale ones dropped)."""
        jobs = self.jobs
        while heap:
            available_at, seq, job_id = heap[0]
            record = jobs.get(job_id)
            if (
                record is not None
                and record.status is JobStatus.PENDING
                and record.seq == seq
                and record.available_at == available_at
            ):
                return heap[0]
            heapq.heappop(heap)
            self.heap_entries -= 1
        return None

    def lease_head(self) -> Entry | None:
        leases = self.leases
        while leases:
            until, seq, job_id = leases[0]
            record = self.reserved.get(job_id)
            if record is not None and record.seq == seq and record.reserved_until == until:
                return leases[0]
            heapq.heappop(leases)
        return None

    def first_available(self, queues: Sequence[str] | None, now: float) -> JobRecord | None:
        """The job a reserve takes (the memory driver's rule): by ``(available_at, seq)`` over all
        queues, or from the first of ``queues`` that has one due."""
        best: Entry | None = None
        if queues is None:
            for heap in self.heaps.values():
                head = self.head(heap)
                if head is not None and head[0] <= now and (best is None or head[:2] < best[:2]):
                    best = head
        else:
            for name in queues:
                head = self.head(self.heaps.get(name) or [])
                if head is not None and head[0] <= now:
                    best = head
                    break
        return None if best is None else self.jobs[best[2]]

    def next_available_at(self, queues: Sequence[str] | None) -> float | None:
        names = list(self.heaps) if queues is None else queues
        heads = [
            head[0]
            for name in names
            if (heap := self.heaps.get(name)) and (head := self.head(heap)) is not None
        ]
        return min(heads) if heads else None

    def apply(self, entry: Op) -> None:
        """Apply one journal operation (live or replayed: the same code). Checks what it reads
        before changing anything; raises ValueError, KeyError or TypeError if ``entry`` is
        malformed. An operation on a job that is not there (its line was quarantined) changes
        nothing."""
        handler = self._HANDLERS.get(entry["op"])
        if handler is None:
            raise ValueError(f"unknown operation {entry['op']!r}")
        handler(self, entry)

    def _push(self, entry: Op) -> None:
        records = [record_from_json(item) for item in _items(entry, "jobs")]
        if any(record.status is not JobStatus.PENDING for record in records):
            raise ValueError("a pushed job must be pending")
        for record in records:
            self.put(record)
        if "ids" in entry:
            self.client_ids.update(client_ids_from_json(_items(entry, "ids"), "journal"))

    def _reserve(self, entry: Op) -> None:
        job_id, seq, attempts = str(entry["id"]), int(entry["seq"]), int(entry["attempts"])
        until, by = _number(entry, "until"), entry.get("by")
        record = self.jobs.get(job_id)
        if record is None or record.status is not JobStatus.PENDING or record.seq != seq:
            return
        record.status = JobStatus.RESERVED
        record.attempts = attempts
        record.reserved_by = None if by is None else str(by)
        record.reserved_until = until
        self.reserve(record)

    def _ack(self, entry: Op) -> None:
        job_id, seq = str(entry["id"]), int(entry["seq"])
        held = self.reserved.get(job_id)
        if held is not None and held.seq == seq:
            del self.reserved[job_id]
            del self.jobs[job_id]

    def _settle(self, entry: Op) -> None:
        """``release`` (the job comes back as given) or ``bury`` (it goes to the dead letters)."""
        record = record_from_json(entry["job"])
        wanted = JobStatus.PENDING if entry["op"] == "release" else JobStatus.DEAD
        if record.status is not wanted:
            raise ValueError(f"a job given to {entry['op']} must be {wanted}")
        self.put(record)

    def _reclaim(self, entry: Op) -> None:
        now = _number(entry, "now")
        moves = [(str(i), None if seq is None else int(seq)) for i, seq in _items(entry, "jobs")]
        for job_id, new_seq in moves:
            record = self.reserved.get(job_id)
            if record is None:
                continue
            record.end_lease(now, dead=new_seq is None)  # as the journal says it was decided
            if new_seq is not None:
                record.seq = new_seq
            self.put(record)

    def _renew(self, entry: Op) -> None:
        """Leases a live worker extended: ``jobs`` is a list of ``[id, seq, reserved_until]``."""
        moves = [(str(i), int(seq), float(until)) for i, seq, until in _items(entry, "jobs")]
        for job_id, seq, until in moves:
            record = self.reserved.get(job_id)
            if record is None or record.seq != seq:
                continue  # reclaimed or settled since (its line came first)
            record.reserved_until = until
            self.reserve(record)  # a new lease heap entry; the old one is dropped when it surfaces

    def _requeue(self, entry: Op) -> None:
        now = _number(entry, "now")
        moves = [(str(i), int(seq)) for i, seq in _items(entry, "jobs")]
        for job_id, new_seq in moves:
            record = self.dead.get(job_id)
            if record is None:
                continue
            record.status = JobStatus.PENDING
            record.attempts = 0
            record.available_at = now
            record.failed_at = None
            record.seq = new_seq
            self.put(record)

    def _purge(self, entry: Op) -> None:
        for job_id in [str(i) for i in _items(entry, "ids")]:
            self.dead.pop(job_id, None)

    def _cancel(self, entry: Op) -> None:
        job_id, seq = str(entry["id"]), int(entry["seq"])
        record = self.jobs.get(job_id)
        if record is not None and record.status is JobStatus.PENDING and record.seq == seq:
            del self.jobs[job_id]  # its heap entry is now stale: head() drops it

    def _clear(self, entry: Op) -> None:
        self.jobs.clear()
        self.reserved.clear()
        self.heaps.clear()
        self.heap_entries = 0
        self.leases.clear()

    _HANDLERS: ClassVar[dict[str, Callable[[JobIndex, Op], None]]] = {
        "push": _push,
        "reserve": _reserve,
        "ack": _ack,
        "release": _settle,
        "bury": _settle,
        "reclaim": _reclaim,
        "renew": _renew,
        "requeue": _requeue,
        "purge": _purge,
        "clear": _clear,
        "cancel": _cancel,
    }
