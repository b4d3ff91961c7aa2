"""FileStorageDriver (``driver: file``): jobs as JSON files on disk, shared by processes on one machine.

How it stores jobs (files: :mod:`khadem_lab.drivers.filelog`):

- ``main.json`` is a snapshot in the spec's shape, ``{"jobs": [...]}`` plus the sequence counter
  and the *generation* of the journal that continues it; it is only ever replaced whole
  (write a temporary file, fsync, rename), so a reader sees the old one or the new one.
- ``journal-G.log`` holds every operation since that snapshot, one JSON line each (push, reserve,
  ack, release, bury, reclaim, requeue, purge, clear, cancel), appended with one ``write()``. A dispatch
  costs one short line, whatever the number of jobs stored.
- Every operation takes ``fcntl.flock`` on ``lock``, reads the journal lines other processes
  appended since its last look (from its own offset: no rescan), applies them to an in-memory
  index (a heap per queue by ``(available_at, seq)``, as in the memory driver), decides, appends
  its own line, fsyncs it if the ``fsync`` mode says so (dispatches do by default), and unlocks.
  The line is the commit: whatever process reads the journal next replays exactly the same change.
- When the journal outgrows the live jobs a few times over, the driver writes a new snapshot of
  the next generation and starts a new journal (amortized O(1) per operation). The ``lock`` file
  holds the current generation, so another process sees at one read that it must reload.

Crashes: a last line without its newline was cut short by a crash and never acknowledged: it is
cut off. A line that cannot be read anywhere else is moved aside to ``journal-G.log.corrupt-N``
(logged as a warning) and the rest is kept; a snapshot whose frame is damaged raises
:class:`~khadem_lab.errors.StorageError` naming the file instead of starting empty.
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..clock import Clock
from ..config import DriverConfig, check_storage_path
from ..errors import ConfigError, StorageError
from ..metrics import QueueMetrics
from ..records import JobRecord, JobStatus, QueueCounts
from ..registry import JobRegistry
from .base import BaseQueueDriver
from .fileindex import JobIndex, Op
from .filelog import (
    LOCK,
    SNAPSHOT,
    Journal,
    LockFile,
    check_not_world_writable,
    dumps,
    fsync_dir,
    journal_generation,
    journal_name,
    make_private_dirs,
    quarantine,
    read_snapshot,
    refuse_symlink,
    storage_error,
    write_snapshot,
)

log = logging.getLogger(__name__)

FSYNC_MODES = ("dispatch", "always", "never")
#: Operations whose journal line is flushed before they return with ``fsync="dispatch"``.
DURABLE_OPS = frozenset({"push", "requeue", "purge", "clear", "cancel"})
DEFAULT_PATH = "./storage/queue"


def _copy(record: JobRecord) -> JobRecord:
    return copy.copy(record)


class FileStorageDriver(BaseQueueDriver):
    """Persistent, crash-safe, shared by several processes on one machine (see the module doc).

    ``fsync="dispatch"`` (default): a dispatch (and a dead-letter requeue, purge, clear or cancel) is on
    disk before it returns; reserve, ack and retry lines are not flushed one by one (a flush of a
    later line takes them along): a crashed process loses nothing, a power loss may undo the last
    few, which at worst runs a job again, never loses one. ``"always"``: every operation is on disk
    before it returns. ``"never"``: the OS writes back when it likes; a crashed process loses
    nothing, a power loss can lose the last few seconds of operations. Snapshots are fsynced in
    every mode."""

    driver_type = "file"
    shared_between_processes = True
    serializes_jobs = True
    #: Compaction: when the journal is over this many bytes and ``COMPACT_RATIO`` times the
    #: size of the live jobs.
    COMPACT_MIN_BYTES = 512 * 1024
    COMPACT_RATIO = 4

    def __init__(
        self,
        config: DriverConfig | None = None,
        *,
        storage_path: str | os.PathLike[str] = DEFAULT_PATH,
        fsync: str = "dispatch",
        clock: Clock | None = None,
        registry: JobRegistry | None = None,
        metrics: QueueMetrics | None = None,
    ) -> None:
        super().__init__(config, clock=clock, registry=registry, metrics=metrics)
        if fsync not in FSYNC_MODES:
            raise ConfigError(
                f"queue.drivers.{self.name}.fsync", fsync, "one of 'dispatch', 'always', 'never'"
            )
        self.storage_path = check_storage_path(f"queue.drivers.{self.name}.path", storage_path, "a directory")
        self.fsync = fsync
        self._fsync = fsync == "always"
        self._lock: LockFile | None = None
        self._journal: Journal | None = None
        self._generation = -1
        self._record_bytes = 512  # average stored size of a job, for the compaction threshold
        self._index = JobIndex()
        self._open()

    def _held(self, record: JobRecord) -> JobRecord | None:
        """The stored reservation that ``record`` stands for; None if it is not ours any more (its
        lease ended and the job was reclaimed, or it was cleared): then nothing is changed."""
        held = self._index.reserved.get(record.id)
        if held is None or held.seq != record.seq:
            log.warning(
                "%s: job %s is no longer reserved under this lease (it ended, or the job was "
                "cleared); leaving it as it is",
                self.name,
                record.id,
            )
            return None
        return held

    # ===================================================================== files
    def _open(self) -> None:
        directory = self.storage_path
        if os.path.islink(directory):
            raise refuse_symlink(directory)
        if os.path.lexists(directory) and not directory.is_dir():
            raise storage_error(directory, "exists and is not a directory")
        make_private_dirs(directory)
        check_not_world_writable(directory, "storage directory")
        self._lock = LockFile(directory / LOCK)
        with self._lock.held():
            self._reload()

    def _reload(self) -> None:
        """(Re)load everything: snapshot, then its journal. Under the lock."""
        assert self._lock is not None
        directory = self.storage_path
        snapshot_path = directory / SNAPSHOT
        if not snapshot_path.exists():
            self._create_snapshot(snapshot_path)
        snapshot = read_snapshot(snapshot_path)
        self._index = JobIndex()
        for record in snapshot.records:
            self._index.put(record)
        self._index.client_ids = dict(snapshot.client_ids or {})
        self._index.seq = max(self._index.seq, snapshot.seq)
        if self._journal is not None:
            self._journal.close()
        self._generation = snapshot.generation
        self._journal = Journal(directory / journal_name(snapshot.generation), snapshot.generation)
        if self._lock.generation() != snapshot.generation:
            self._lock.set_generation(snapshot.generation)
        self._remove_leftovers(snapshot.generation)
        if self._catch_up() or snapshot.damaged:
            self._compact()  # what was quarantined goes out of the files for good

    def _create_snapshot(self, path: Path) -> None:
        directory = path.parent
        journals = sorted(p.name for p in directory.iterdir() if journal_generation(p.name) is not None)
        if any((directory / name).stat().st_size for name in journals):
            raise storage_error(
                path,
                f"is missing but {', '.join(journals)} hold queue operations; restore {SNAPSHOT} "
                "from a backup, or move the journals aside to start empty",
            )
        tmp = directory / (SNAPSHOT + ".tmp")
        write_snapshot(tmp, 1, 0, [])
        os.replace(tmp, path)
        fsync_dir(directory)

    def _remove_leftovers(self, generation: int) -> None:
        """Journals of other generations and temporary snapshots left by a crashed compaction."""
        for path in self.storage_path.iterdir():
            gen = journal_generation(path.name)
            if (gen is not None and gen != generation) or path.name == SNAPSHOT + ".tmp":
                with contextlib.suppress(OSError):
                    path.unlink()

    def _catch_up(self) -> bool:
        """Apply the journal lines appended since this process last looked. True if some line
        could not be read (it is quarantined, the rest applied)."""
        journal = self._journal
        assert journal is not None
        bad: list[bytes] = []
        first_error = ""
        for offset, line in journal.read_new():
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict):
                    raise ValueError("not a JSON object")
                self._index.apply(entry)
            except (ValueError, KeyError, TypeError, RecursionError) as exc:
                if not bad:
                    why = "nested too deep to decode" if isinstance(exc, RecursionError) else str(exc)
                    first_error = f"the first at byte {offset}: {type(exc).__name__}: {why}"
                bad.append(line)
        if bad:
            quarantine(journal.path, b"\n".join(bad) + b"\n", f"{len(bad)} unreadable line(s), {first_error}")
        return bool(bad)

    @contextlib.contextmanager
    def _op(self) -> Iterator[None]:
        """One operation: lock, catch up with other processes, do it, unlock."""
        if self._lock is None:
            self._open()
        assert self._lock is not None
        with self._lock.held():
            journal = self._journal
            if journal is None or self._lock.generation() != self._generation:
                self._reload()  # another process compacted (or this driver was closed)
            elif journal.size() < journal.offset:
                self._reload()  # the journal shrank under us: trust only what is on disk
            elif self._catch_up():
                self._compact()
            yield
        if not self._index.reserved:
            self.stop_lease_watch()

    def _commit(self, entry: Op) -> int:
        """Append ``entry`` to the journal (durable first), then apply it. Returns the line's size."""
        assert self._journal is not None
        line = dumps(entry) + b"\n"
        self._journal.append(line, self._fsync or (self.fsync == "dispatch" and entry["op"] in DURABLE_OPS))
        self._index.apply(entry)
        if self._journal.offset >= self.COMPACT_MIN_BYTES:
            live = len(self._index.jobs) + len(self._index.dead)
            if self._journal.offset >= self.COMPACT_RATIO * (live + 1) * self._record_bytes:
                self._compact()
        return len(line)

    def _compact(self, *, raise_errors: bool = False) -> None:
        """Write the next generation's snapshot and start its journal. Under the lock, caught up.

        Order: snapshot to a temporary file and fsync; announce the generation in ``lock``; create
        the new journal; rename the snapshot over ``main.json`` (the commit) and fsync the
        directory; delete the old journal. A crash before the rename leaves the old snapshot and
        journal in charge (the next load removes the leftovers); after it, the new ones."""
        assert self._lock is not None and self._journal is not None
        directory = self.storage_path
        generation = self._generation + 1
        tmp = directory / (SNAPSHOT + ".tmp")
        records = [*self._index.jobs.values(), *self._index.dead.values()]
        journal: Journal | None = None
        written = announced = False
        try:
            client_ids = self._index.live_client_ids(self.clock.time())
            size = write_snapshot(tmp, generation, self._index.seq, records, client_ids)
            written = True
            self._lock.set_generation(generation)
            announced = True
            journal = Journal(directory / journal_name(generation), generation, truncate=True)
            os.replace(tmp, directory / SNAPSHOT)
            fsync_dir(directory)
        except (OSError, StorageError) as exc:
            if journal is not None:
                journal.close()
            if written:  # ours; a file planted there (a symlink) is left for a person to see
                with contextlib.suppress(OSError):
                    tmp.unlink()
            if announced:
                with contextlib.suppress(StorageError):
                    self._lock.set_generation(self._generation)
            if raise_errors:
                if isinstance(exc, StorageError):
                    raise
                raise storage_error(tmp, "compaction failed", exc) from exc
            log.error("%s: compaction failed, the journal keeps growing until it works: %s", directory, exc)
            return
        old = self._journal
        old.close()
        with contextlib.suppress(OSError):
            old.path.unlink()
        self._journal = journal
        self._generation = generation
        if records:
            self._record_bytes = max(64, size // len(records))

    # ===================================================================== primitives
    async def push_records(self, records: Sequence[JobRecord]) -> None:
        with self._op():
            seq = self._index.seq
            rows = []
            for record in records:
                seq += 1
                record.seq = seq
                record.id = str(seq)  # unique across processes, and the same on every re-run
                record.status = JobStatus.PENDING
                rows.append(record.to_dict())
            size = self._commit({"op": "push", "jobs": rows})
            if rows:
                self._record_bytes = max(64, size // len(rows))

    async def push_new_records(
        self, records: Sequence[JobRecord], fingerprints: Sequence[str], now: float, remember_until: float
    ) -> list[str | None]:
        # Client ids are never digits only, so they never meet the ids taken from seq. The line
        # that stores the jobs also remembers their ids: one commit.
        with self._op():
            found = [self._index.id_taken(record.id, now) for record in records]
            rows, ids = [], []
            seq = self._index.seq
            for record, mark, known in zip(records, fingerprints, found, strict=True):
                if known is not None:
                    continue
                seq += 1
                record.seq = seq
                record.status = JobStatus.PENDING
                rows.append(record.to_dict())
                ids.append([record.id, mark, remember_until])
            if rows:
                self._commit({"op": "push", "jobs": rows, "ids": ids})
            return found

    async def reserve_record(
        self, queues: Sequence[str] | None, now: float, worker: str | None
    ) -> JobRecord | None:
        with self._op():
            record = self._index.first_available(queues, now)
            if record is None:
                return None
            until = now + self._lease_seconds + (record.timeout or 0.0)
            entry = {"op": "reserve", "id": record.id, "seq": record.seq, "attempts": record.attempts + 1}
            self._commit({**entry, "until": until, "by": worker})
            return _copy(record)

    async def ack_record(self, record: JobRecord) -> bool:
        with self._op():
            if self._held(record) is None:
                return False
            self._commit({"op": "ack", "id": record.id, "seq": record.seq})
        record.status = JobStatus.COMPLETED
        record.reserved_until = None
        return True

    async def release_record(self, record: JobRecord) -> bool:
        with self._op():
            if self._held(record) is None:
                return False
            row = record.to_dict()
            row.update(status="pending", reserved_until=None, reserved_by=None, seq=self._index.seq + 1)
            self._commit({"op": "release", "job": row})
        record.status = JobStatus.PENDING
        record.reserved_until = record.reserved_by = None
        record.seq = row["seq"]
        return True

    async def bury_record(self, record: JobRecord) -> bool:
        with self._op():
            if self._held(record) is None:
                return False
            row = record.to_dict()
            row.update(status="dead", reserved_until=None)
            self._commit({"op": "bury", "job": row})
        record.status = JobStatus.DEAD
        record.reserved_until = None
        return True

    async def renew_records(self, records: Sequence[JobRecord], now: float) -> list[bool | None]:
        """One journal line for all of them (``renew``: id, seq and new lease end of each)."""
        if not records:
            return []
        with self._op():
            renewed: list[bool | None] = []
            moves: list[tuple[str, int, float]] = []
            for record in records:
                held = self._index.reserved.get(record.id)
                if held is None or held.seq != record.seq or held.reserved_until is None:
                    renewed.append(False)  # reclaimed, settled or cleared: not ours any more
                    continue
                until = max(held.reserved_until, now + self._lease_seconds)
                if until != held.reserved_until:
                    moves.append((record.id, record.seq, until))
                record.reserved_until = until
                renewed.append(True)
            if moves:
                self._commit({"op": "renew", "jobs": moves})
            return renewed

    async def reclaim_expired(self, now: float) -> list[JobRecord]:
        with self._op():
            expired: list[JobRecord] = []
            while (head := self._index.lease_head()) is not None and head[0] <= now:
                expired.append(self._index.reserved[head[2]])
                heapq.heappop(self._index.leases)
            if not expired:
                return []
            moves: list[tuple[str, int | None]] = []
            seq = self._index.seq
            for record in expired:
                if record.attempts >= record.max_attempts:
                    moves.append((record.id, None))
                else:
                    seq += 1
                    moves.append((record.id, seq))
            try:
                self._commit({"op": "reclaim", "now": now, "jobs": moves})
            except BaseException:
                for record in expired:  # not committed: their leases are still there
                    self._index.reserve(record)
                raise
            return [_copy(r) for r in expired]

    async def next_lease_expiry(self) -> float | None:
        with self._op():
            head = self._index.lease_head()
            return None if head is None else head[0]

    async def counts(self, now: float) -> QueueCounts:
        with self._op():
            ready = delayed = 0
            for record in self._index.jobs.values():
                if record.status is JobStatus.PENDING:
                    if record.available_at <= now:
                        ready += 1
                    else:
                        delayed += 1
            return QueueCounts(ready, delayed, len(self._index.reserved))

    async def next_available_at(self, queues: Sequence[str] | None) -> float | None:
        with self._op():
            return self._index.next_available_at(queues)

    async def clear_records(self) -> int:
        with self._op():
            removed = len(self._index.jobs)
            if removed:
                self._commit({"op": "clear"})
            return removed

    async def dead_records(self, limit: int | None = None) -> list[JobRecord]:
        with self._op():
            records = list(self._index.dead.values())
            return [_copy(r) for r in (records if limit is None else records[:limit])]

    async def get_dead_record(self, job_id: str) -> JobRecord | None:
        with self._op():
            record = self._index.dead.get(job_id)
            return None if record is None else _copy(record)

    def _dead_ids(self, job_ids: Sequence[str] | None) -> list[str]:
        if job_ids is None:
            return list(self._index.dead)
        return [i for i in dict.fromkeys(job_ids) if i in self._index.dead]

    async def requeue_dead_records(self, job_ids: Sequence[str] | None, now: float) -> list[JobRecord]:
        with self._op():
            ids = self._dead_ids(job_ids)
            if not ids:
                return []
            moves = [(job_id, self._index.seq + n) for n, job_id in enumerate(ids, 1)]
            self._commit({"op": "requeue", "now": now, "jobs": moves})
            return [_copy(self._index.jobs[job_id]) for job_id in ids]

    async def purge_dead_records(self, job_ids: Sequence[str] | None) -> list[JobRecord]:
        with self._op():
            ids = self._dead_ids(job_ids)
            if not ids:
                return []
            records = [_copy(self._index.dead[job_id]) for job_id in ids]
            self._commit({"op": "purge", "ids": ids})
            return records

    async def list_records(self, state: str, now: float, limit: int | None = None) -> list[JobRecord]:
        with self._op():
            if state == "reserved":
                found = sorted(self._index.reserved.values(), key=lambda r: (r.reserved_until or 0.0, r.seq))
            else:
                due = state == "ready"
                waiting = (
                    r
                    for r in self._index.jobs.values()
                    if r.status is JobStatus.PENDING and (r.available_at <= now) == due
                )
                found = sorted(waiting, key=lambda r: (r.available_at, r.seq))
            return [_copy(r) for r in (found if limit is None else found[:limit])]

    async def get_record(self, job_id: str) -> JobRecord | None:
        with self._op():
            record = self._index.jobs.get(job_id) or self._index.dead.get(job_id)
            return None if record is None else _copy(record)

    async def cancel_record(self, job_id: str) -> JobRecord | None:
        with self._op():
            record = self._index.jobs.get(job_id)
            if record is None or record.status is not JobStatus.PENDING:
                return None
            found = _copy(record)
            self._commit({"op": "cancel", "id": job_id, "seq": record.seq})
            return found

    async def compact(self) -> None:
        """Rewrite the snapshot now and start a new journal (the driver also does this by itself
        whenever the journal has grown a few times larger than the live jobs)."""
        with self._op():
            self._compact(raise_errors=True)

    async def storage_info(self) -> dict[str, Any]:
        """``storage_files``: the snapshot and the current journal (the spec's debugging stats)."""
        with self._op():
            assert self._journal is not None
            return {
                "storage_path": str(self.storage_path),
                "storage_files": [str(self.storage_path / SNAPSHOT), str(self._journal.path)],
            }

    async def close(self) -> None:
        """Close the files; a later call opens them again (and reloads)."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None
