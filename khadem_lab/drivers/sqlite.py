"""SQLiteDriver: jobs in one SQLite database file, shared by any number of processes on a machine.

The spec's "database driver" example done properly: standard-library ``sqlite3``, WAL journal,
every operation one transaction, reserve one atomic step (``BEGIN IMMEDIATE``: a single writer at a
time, other processes wait up to ``busy_timeout``). Every time it stores comes from the injected
clock (never ``CURRENT_TIMESTAMP``), so the same queue runs on virtual time too.

Durability (option ``fsync``):

* ``"dispatch"`` (default): a dispatch (and a requeue from the dead-letter queue) returns after its
  commit is on disk (``synchronous=FULL`` for that commit). Reserve, ack, retry and dead-letter
  commits are not flushed one by one: a process crash loses none of them (WAL), a power loss may
  undo the last few, which at worst delivers a job again (at least once), never loses one.
* ``"always"``: every commit is flushed (``synchronous=FULL``).
* ``"never"``: nothing is flushed by us (``synchronous=NORMAL``): safe against a process crash,
  not against a power loss.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..config import DriverConfig, check_seconds, check_storage_path
from ..errors import ConfigError, StorageError
from ..records import JobRecord, JobStatus, QueueCounts
from ..serialization import decode_stored_payload
from .base import BaseQueueDriver
from .filelog import check_not_world_writable, make_private_dirs, refuse_symlinks
from .sqlitewal import check_wal, wal_path

log = logging.getLogger(__name__)

FSYNC_MODES = ("dispatch", "always", "never")
#: ``PRAGMA application_id`` of a queue database ("KHQL"): set when the driver creates it.
APPLICATION_ID = 0x4B48514C
#: Next to the database, ``<path>-khadem`` is written once the queue's tables exist: a database
#: that has no tables while its marker exists lost its content (truncated, replaced).
MARKER_SUFFIX = "-khadem"
#: Opening a queue waits at least this long (seconds) for another process's lock.
OPEN_BUSY_TIMEOUT = 10.0
#: A settle (ack, release, bury) that finds the database locked for longer than ``busy_timeout``
#: waits this long on the clock, doubling up to ``SETTLE_RETRY_MAX_WAIT``, and tries again, until
#: the job's lease would end: it then raises StorageError (the lease brings the job back).
SETTLE_RETRY_FIRST_WAIT = 0.005
SETTLE_RETRY_MAX_WAIT = 1.0

COLUMNS = (
    "id, seq, queue, type, payload, display_name, max_retries, timeout, available_at, created_at, "
    "attempts, status, reserved_until, reserved_by, last_error, error_type, failed_at"
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    queue TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    display_name TEXT NOT NULL,
    max_retries INTEGER NOT NULL,
    timeout REAL,
    available_at REAL NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    status TEXT NOT NULL,
    reserved_until REAL,
    reserved_by TEXT,
    last_error TEXT,
    error_type TEXT,
    failed_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_pending_by_queue ON jobs (queue, available_at, seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS jobs_pending ON jobs (available_at, seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS jobs_reserved ON jobs (reserved_until, seq) WHERE status = 'reserved';
CREATE INDEX IF NOT EXISTS jobs_dead ON jobs (seq) WHERE status = 'dead';
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters (name, value) VALUES ('seq', 0);
CREATE TABLE IF NOT EXISTS job_ids (
    id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, remember_until REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS job_ids_until ON job_ids (remember_until);
"""


class SQLiteDriver(BaseQueueDriver):
    """Persistent queue in a SQLite file; safe with several worker processes."""

    driver_type = "sqlite"
    shared_between_processes = True
    serializes_jobs = True

    def __init__(
        self,
        config: DriverConfig | None = None,
        *,
        path: str | os.PathLike[str] = "./storage/queue.sqlite3",
        fsync: str = "dispatch",
        busy_timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        if fsync not in FSYNC_MODES:
            raise ConfigError(f"queue.drivers.{self.name}.fsync", fsync, f"one of {', '.join(FSYNC_MODES)}")
        where = f"queue.drivers.{self.name}"
        self.path = check_storage_path(f"{where}.path", path, "a database file")
        self.busy_timeout = check_seconds(f"{where}.busy_timeout", busy_timeout, minimum=0.0)
        if self.path.is_dir():
            raise ConfigError(f"{where}.path", path, "the path of a database file, not of a directory")
        self.fsync = fsync
        self._conn = _open(self.path, self.busy_timeout)
        self._synchronous = ""
        self._set_synchronous("FULL" if fsync == "always" else "NORMAL")

    # -- transactions ---------------------------------------------------------------------------
    def _set_synchronous(self, level: str) -> None:
        if level != self._synchronous:
            self._conn.execute(f"PRAGMA synchronous = {level}")
            self._synchronous = level

    @contextlib.contextmanager
    def _transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``durable``: its commit is flushed to disk (fsync "dispatch")."""
        if self.fsync == "dispatch":
            self._set_synchronous("FULL" if durable else "NORMAL")
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise _storage_error(self.path, exc) from exc
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _storage_error(self.path, exc) from exc

    @staticmethod
    def _take_seqs(conn: sqlite3.Connection, count: int) -> int:
        """Reserve ``count`` sequence numbers; returns the first."""
        (last,) = conn.execute(
            "UPDATE counters SET value = value + ? WHERE name = 'seq' RETURNING value", (count,)
        ).fetchone()
        return int(last) - count + 1

    # -- primitives -----------------------------------------------------------------------------
    async def push_records(self, records: Sequence[JobRecord]) -> None:
        with self._transaction(durable=True) as conn:
            first = self._take_seqs(conn, len(records))
            for offset, record in enumerate(records):
                record.seq = first + offset
                record.id = str(record.seq)  # unique across processes, and the same in every rerun
            conn.executemany(
                f"INSERT INTO jobs ({COLUMNS}) VALUES ({', '.join('?' * 17)})",
                [_row(r) for r in records],
            )

    async def push_new_records(
        self, records: Sequence[JobRecord], fingerprints: Sequence[str], now: float, remember_until: float
    ) -> list[str | None]:
        # Client ids are never digits only, so they never meet the ids taken from seq.
        with self._transaction(durable=True) as conn:
            conn.execute(
                "DELETE FROM job_ids WHERE remember_until <= ? AND id NOT IN (SELECT id FROM jobs)", (now,)
            )
            found: list[str | None] = []
            new: list[tuple[JobRecord, str]] = []
            for record, mark in zip(records, fingerprints, strict=True):
                row = conn.execute("SELECT fingerprint FROM job_ids WHERE id = ?", (record.id,)).fetchone()
                if row is None and conn.execute("SELECT 1 FROM jobs WHERE id = ?", (record.id,)).fetchone():
                    row = ("",)
                found.append(None if row is None else str(row[0]))
                if row is None:
                    new.append((record, mark))
            if new:
                first = self._take_seqs(conn, len(new))
                for offset, (record, _mark) in enumerate(new):
                    record.seq = first + offset
                conn.executemany(
                    f"INSERT INTO jobs ({COLUMNS}) VALUES ({', '.join('?' * 17)})", [_row(r) for r, _ in new]
                )
                conn.executemany(
                    "INSERT INTO job_ids (id, fingerprint, remember_until) VALUES (?, ?, ?)",
                    [(r.id, mark, remember_until) for r, mark in new],
                )
            return found

    async def reserve_record(
        self, queues: Sequence[str] | None, now: float, worker: str | None
    ) -> JobRecord | None:
        # One statement: find and take the first available row atomically (a statement is its own
        # write transaction), in the queues' priority order.
        for queue in [None] if queues is None else queues:
            where = "status = 'pending' AND available_at <= ?" + ("" if queue is None else " AND queue = ?")
            params: tuple[Any, ...] = (now,) if queue is None else (now, queue)
            row = self._write_one(
                "UPDATE jobs SET status = 'reserved', attempts = attempts + 1, reserved_by = ?, "
                "reserved_until = ? + ? + COALESCE(timeout, 0) "
                f"WHERE id = (SELECT id FROM jobs WHERE {where} ORDER BY available_at, seq LIMIT 1) "
                f"RETURNING {COLUMNS}",
                (worker, now, self.lease_seconds, *params),
            )
            if row is not None:
                return _record(row)
        return None

    def _write_one(self, sql: str, params: Sequence[Any]) -> Any:
        """One write statement in its own transaction; its first returned row (or None)."""
        if self.fsync == "dispatch":
            self._set_synchronous("NORMAL")
        try:
            return self._conn.execute(sql, params).fetchone()
        except sqlite3.DatabaseError as exc:
            raise _storage_error(self.path, exc) from exc

    async def _settle(self, record: JobRecord, write: Callable[[JobRecord], bool]) -> bool:
        """``write(record)``, tried again while the database is locked (SQLITE_BUSY after
        ``busy_timeout``): a settle that gives up lets the job run again after its lease, with no
        crash at all. Each try is one synchronous busy wait of ``busy_timeout`` inside SQLite; the
        backoff between tries goes through the driver's clock, and the lease (in the same clock's
        time) bounds it: on virtual time the backoff costs no real time, so a settle makes at
        most about lease/backoff tries of ``busy_timeout`` each, then gives up as on real time."""
        wait = SETTLE_RETRY_FIRST_WAIT
        tries = 0
        while True:
            try:
                return write(record)
            except StorageError as exc:
                if exc.__cause__ is None or not is_busy(exc.__cause__):
                    raise
                tries += 1
                now = self.clock.time()
                lease_end = record.reserved_until
                if lease_end is None:
                    lease_end = now + self._lease_seconds
                if now + wait >= lease_end:
                    raise StorageError(
                        f"{exc} (gave up after {tries} tries: job {record.id}'s lease ends before the "
                        "next one; it will run again)"
                    ) from exc.__cause__
            if tries == 1 or tries % 100 == 0:
                log.debug("%s: settle of job %s met a lock (try %d); retrying", self.name, record.id, tries)
            await self.clock.sleep(wait)
            wait = min(wait * 2, SETTLE_RETRY_MAX_WAIT)

    # A settle (ack, release, bury) only touches the reservation it was given: if the lease ran
    # out and another worker took the job since (attempts moved on), it is a no-op.
    async def ack_record(self, record: JobRecord) -> bool:
        acked = await self._settle(record, self._ack)
        if acked:  # settled: a worker's heartbeat no longer renews it
            record.status, record.reserved_until = JobStatus.COMPLETED, None
        return acked

    def _ack(self, record: JobRecord) -> bool:
        return (
            self._write_one(
                "DELETE FROM jobs WHERE id = ? AND status = 'reserved' AND attempts = ? RETURNING id",
                (record.id, record.attempts),
            )
            is not None
        )

    async def release_record(self, record: JobRecord) -> bool:
        return await self._settle(record, self._release)

    def _release(self, record: JobRecord) -> bool:
        with self._transaction() as conn:
            record.seq = self._take_seqs(conn, 1)
            return (
                conn.execute(
                    "UPDATE jobs SET status = 'pending', seq = ?, available_at = ?, reserved_until = NULL, "
                    "reserved_by = NULL, last_error = ?, error_type = ? "
                    "WHERE id = ? AND status = 'reserved' AND attempts = ?",
                    (
                        record.seq,
                        record.available_at,
                        record.last_error,
                        record.error_type,
                        record.id,
                        record.attempts,
                    ),
                ).rowcount
                == 1
            )

    async def bury_record(self, record: JobRecord) -> bool:
        return await self._settle(record, self._bury)

    def _bury(self, record: JobRecord) -> bool:
        with self._transaction() as conn:
            record.seq = self._take_seqs(conn, 1)  # dead letters are listed in the order they died
            return (
                conn.execute(
                    "UPDATE jobs SET status = 'dead', seq = ?, reserved_until = NULL, reserved_by = NULL, "
                    "last_error = ?, error_type = ?, failed_at = ? "
                    "WHERE id = ? AND status = 'reserved' AND attempts = ?",
                    (
                        record.seq,
                        record.last_error,
                        record.error_type,
                        record.failed_at,
                        record.id,
                        record.attempts,
                    ),
                ).rowcount
                == 1
            )

    async def renew_records(self, records: Sequence[JobRecord], now: float) -> list[bool | None]:
        """All in one transaction; each only if its reservation (id, attempts) is still held."""
        if not records:
            return []
        renewed: list[bool | None] = []
        with self._transaction() as conn:
            for record in records:
                row = conn.execute(
                    "UPDATE jobs SET reserved_until = MAX(reserved_until, ?) "
                    "WHERE id = ? AND status = 'reserved' AND attempts = ? RETURNING reserved_until",
                    (now + self.lease_seconds, record.id, record.attempts),
                ).fetchone()
                if row is not None:
                    record.reserved_until = float(row[0])
                renewed.append(row is not None)
        return renewed

    def lease_may_have_ended(self, now: float) -> bool:
        (earliest,) = self._query("SELECT MIN(reserved_until) FROM jobs WHERE status = 'reserved'")[0]
        return earliest is not None and earliest <= now

    async def reclaim_expired(self, now: float) -> list[JobRecord]:
        with self._transaction() as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM jobs WHERE status = 'reserved' AND reserved_until <= ? "
                "ORDER BY reserved_until, seq",
                (now,),
            ).fetchall()
            if not rows:
                return []
            records = [_record(row) for row in rows]
            first = self._take_seqs(conn, len(records))
            for offset, record in enumerate(records):
                record.seq = first + offset
                record.end_lease(now, dead=record.attempts >= record.max_attempts)
            conn.executemany(
                "UPDATE jobs SET status = ?, seq = ?, available_at = ?, reserved_until = NULL, "
                "reserved_by = NULL, last_error = ?, error_type = ?, failed_at = ? WHERE id = ?",
                [
                    (r.status.value, r.seq, r.available_at, r.last_error, r.error_type, r.failed_at, r.id)
                    for r in records
                ],
            )
            return records

    async def counts(self, now: float) -> QueueCounts:
        ready, delayed, reserved = self._query(
            "SELECT COALESCE(SUM(status = 'pending' AND available_at <= ?), 0), "
            "COALESCE(SUM(status = 'pending' AND available_at > ?), 0), "
            "COALESCE(SUM(status = 'reserved'), 0) FROM jobs WHERE status IN ('pending', 'reserved')",
            (now, now),
        )[0]
        return QueueCounts(int(ready), int(delayed), int(reserved))

    async def next_available_at(self, queues: Sequence[str] | None) -> float | None:
        if queues is None:
            rows = self._query("SELECT MIN(available_at) FROM jobs WHERE status = 'pending'")
        else:
            marks = ", ".join("?" * len(queues))
            rows = self._query(
                f"SELECT MIN(available_at) FROM jobs WHERE status = 'pending' AND queue IN ({marks})",
                list(queues),
            )
        value = rows[0][0]
        return None if value is None else float(value)

    async def next_lease_expiry(self) -> float | None:
        value = self._query("SELECT MIN(reserved_until) FROM jobs WHERE status = 'reserved'")[0][0]
        return None if value is None else float(value)

    async def clear_records(self) -> int:
        with self._transaction(durable=True) as conn:
            return conn.execute("DELETE FROM jobs WHERE status IN ('pending', 'reserved')").rowcount

    async def dead_records(self, limit: int | None = None) -> list[JobRecord]:
        rows = self._query(
            f"SELECT {COLUMNS} FROM jobs WHERE status = 'dead' ORDER BY seq LIMIT ?",
            (-1 if limit is None else limit,),
        )
        return [_record(row) for row in rows]

    async def get_dead_record(self, job_id: str) -> JobRecord | None:
        rows = self._query(f"SELECT {COLUMNS} FROM jobs WHERE status = 'dead' AND id = ?", (job_id,))
        return _record(rows[0]) if rows else None

    def _dead_rows(self, conn: sqlite3.Connection, job_ids: Sequence[str] | None) -> list[JobRecord]:
        if job_ids is None:
            rows = conn.execute(f"SELECT {COLUMNS} FROM jobs WHERE status = 'dead' ORDER BY seq").fetchall()
            return [_record(row) for row in rows]
        found = []
        for job_id in dict.fromkeys(job_ids):
            row = conn.execute(
                f"SELECT {COLUMNS} FROM jobs WHERE status = 'dead' AND id = ?", (job_id,)
            ).fetchone()
            if row is not None:
                found.append(_record(row))
        return found

    async def requeue_dead_records(self, job_ids: Sequence[str] | None, now: float) -> list[JobRecord]:
        with self._transaction(durable=True) as conn:
            records = self._dead_rows(conn, job_ids)
            if not records:
                return []
            first = self._take_seqs(conn, len(records))
            for offset, record in enumerate(records):
                record.seq = first + offset
                record.status = JobStatus.PENDING
                record.attempts = 0
                record.available_at = now
                record.failed_at = None
            conn.executemany(
                "UPDATE jobs SET status = 'pending', seq = ?, attempts = 0, available_at = ?, "
                "failed_at = NULL WHERE id = ?",
                [(r.seq, r.available_at, r.id) for r in records],
            )
            return records

    async def purge_dead_records(self, job_ids: Sequence[str] | None) -> list[JobRecord]:
        with self._transaction(durable=True) as conn:
            records = self._dead_rows(conn, job_ids)
            conn.executemany("DELETE FROM jobs WHERE id = ?", [(r.id,) for r in records])
            return records

    async def list_records(self, state: str, now: float, limit: int | None = None) -> list[JobRecord]:
        where = {
            "ready": "status = 'pending' AND available_at <= ? ORDER BY available_at, seq",
            "delayed": "status = 'pending' AND available_at > ? ORDER BY available_at, seq",
            "reserved": "status = 'reserved' AND ? IS NOT NULL ORDER BY reserved_until, seq",
        }[state]
        rows = self._query(
            f"SELECT {COLUMNS} FROM jobs WHERE {where} LIMIT ?", (now, -1 if limit is None else limit)
        )
        return [_record(row) for row in rows]

    async def get_record(self, job_id: str) -> JobRecord | None:
        rows = self._query(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _record(rows[0]) if rows else None

    async def cancel_record(self, job_id: str) -> JobRecord | None:
        with self._transaction(durable=True) as conn:
            row = conn.execute(
                f"SELECT {COLUMNS} FROM jobs WHERE id = ? AND status = 'pending'", (job_id,)
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM jobs WHERE id = ? AND status = 'pending'", (job_id,))
            return _record(row)

    async def storage_info(self) -> dict[str, Any]:
        files = [
            self.path,
            Path(f"{self.path}-wal"),
            Path(f"{self.path}-shm"),
            Path(f"{self.path}{MARKER_SUFFIX}"),
        ]
        return {"storage_files": [str(f) for f in files if f.exists()]}

    async def close(self) -> None:
        self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteDriver(name={self.name!r}, path={str(self.path)!r})"


# -- rows ------------------------------------------------------------------------------------------
def _row(record: JobRecord) -> tuple[Any, ...]:
    payload = record.payload_json
    if payload is None:
        payload = record.payload if isinstance(record.payload, str) else json.dumps(record.payload)
    return (
        record.id,
        record.seq,
        record.queue,
        record.type,
        payload,
        record.display_name,
        record.max_retries,
        record.timeout,
        record.available_at,
        record.created_at,
        record.attempts,
        record.status.value,
        record.reserved_until,
        record.reserved_by,
        record.last_error,
        record.error_type,
        record.failed_at,
    )


def _record(row: Sequence[Any]) -> JobRecord:
    return JobRecord(
        row[0],
        row[3],
        row[2],
        decode_stored_payload(row[4]),  # never raises: damage is kept as text, to report
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
        row[1],
        row[10],
        JobStatus(row[11]),
        row[12],
        row[13],
        row[14],
        row[15],
        row[16],
    )


def is_busy(exc: BaseException) -> bool:
    """A lock held by another connection for longer than busy_timeout (SQLITE_BUSY/LOCKED):
    transient, unlike damage."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc)
    return "database is locked" in text or "database table is locked" in text


def _storage_error(path: Path, exc: sqlite3.Error) -> StorageError:
    where = f"SQLite queue database {str(path)!r}"
    text = str(exc)
    if is_busy(exc):
        advice = (
            "another process held its lock for longer than busy_timeout; this is not damage. Raise "
            "busy_timeout, or look for a process that keeps a long transaction open"
        )
    elif "unable to open" in text or "readonly" in text or "disk I/O" in text or "full" in text:
        advice = (
            "check that its directory exists and that this user has permission to read and write "
            "it and the file (and that the disk is not full)"
        )
    else:
        advice = (
            "if the file is damaged, move it aside (its jobs cannot be read) and the queue starts a "
            "new one; restore it from a backup to keep them"
        )
    return StorageError(f"{where} cannot be used: {text}. {advice[0].upper()}{advice[1:]}.")


def _open(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """Open (creating, owner-only) the database and make sure it is a usable queue database."""
    make_private_dirs(path.parent)
    check_not_world_writable(path.parent, "database's directory", sticky_ok=True)
    # SQLite follows symbolic links: check the database and its WAL and SHM files first.
    marker = Path(f"{path}{MARKER_SUFFIX}")
    refuse_symlinks(path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal"), marker)
    _refuse_damaged_wal(path)
    created = False
    try:
        try:  # WAL/SHM files get its mode; O_EXCL|O_NOFOLLOW: never through a link planted since
            os.close(
                os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            )
            created = True
        except FileExistsError:
            check_not_world_writable(path, "database file")
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    except OSError as exc:
        raise StorageError(
            f"SQLite queue database {str(path)!r} cannot be created: {exc.strerror or exc}; check that "
            "this user may write its directory"
        ) from exc
    except sqlite3.Error as exc:
        raise _storage_error(path, exc) from exc
    try:
        # Setting up waits for other processes' locks a little longer than an operation does (a
        # synchronous SQLite busy wait: the constructor has no event loop to wait on).
        conn.execute(f"PRAGMA busy_timeout = {int(max(busy_timeout, OPEN_BUSY_TIMEOUT) * 1000)}")
        _check_identity(conn, path, marker, created)  # first: before anything writes to the file
        conn.execute("PRAGMA journal_mode = WAL")
        problems = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError("integrity check failed: " + "; ".join(problems[:3]))
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        _write_marker(marker)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise _storage_error(path, exc) from exc
    return conn


def _refuse_damaged_wal(path: Path) -> None:
    """Before SQLite reads the WAL (and, at the next checkpoint, loses what it ignored): refuse a
    WAL whose damage would silently drop committed transactions (see :mod:`.sqlitewal`)."""
    try:
        damage = check_wal(wal_path(path))
    except OSError as exc:
        raise StorageError(
            f"the SQLite write-ahead log {str(wal_path(path))!r} cannot be read: {exc.strerror or exc}"
        ) from exc
    if damage is None:
        return
    raise StorageError(
        f"{damage.describe()}. The queue was not opened and nothing was changed. First copy "
        f"{str(path)!r} and its -wal file aside (the dropped jobs can only be recovered from that "
        "copy, by hand). To accept the loss and keep the transactions before the damage, checkpoint "
        f"it once (sqlite3 {str(path)!r} 'PRAGMA wal_checkpoint(TRUNCATE)'), then open the queue again"
    )


def _check_identity(conn: sqlite3.Connection, path: Path, marker: Path, created: bool) -> None:
    """A queue database, a new one, or trouble: a file that held a queue and now has no tables
    (truncated to 0 bytes, replaced by an empty one), or another application's database."""
    (app_id,) = conn.execute("PRAGMA application_id").fetchone()
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if app_id not in (0, APPLICATION_ID) or (tables and "jobs" not in tables):
        raise StorageError(
            f"SQLite queue database {str(path)!r} is not a khadem_lab queue (application_id "
            f"{app_id}, tables {sorted(tables)}); give the queue a path of its own"
        )
    if "jobs" not in tables and not created and marker.exists():
        size = path.stat().st_size
        raise StorageError(
            f"SQLite queue database {str(path)!r} has no queue tables ({size} bytes) but held a queue "
            f"({marker.name} says so): it was truncated or replaced, and its jobs are gone. Restore "
            "it from a backup; or, to start an empty queue, move it and its -wal, -shm and "
            f"{MARKER_SUFFIX} files aside. It was left as it is"
        )


def _write_marker(marker: Path) -> None:
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise StorageError(f"cannot write the queue marker {str(marker)!r}: {exc.strerror or exc}") from exc
    try:
        os.write(fd, b"khadem_lab SQLite queue: the database next to this file holds a queue\n")
    finally:
        os.close(fd)
