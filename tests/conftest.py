"""Shared pytest fixtures. Each section belongs to one group of test modules."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import pytest

from khadem_lab import (
    BaseQueueDriver,
    Clock,
    DriverConfig,
    FileStorageDriver,
    InMemoryDriver,
    JobRecord,
    JobRegistry,
    JobStatus,
    QueueCounts,
    RedisStorageDriver,
    SQLiteDriver,
    SynchronousDriver,
)
from khadem_lab.records import LEASE_EXPIRED_ERROR
from khadem_lab.testing import DriverCase

# ================================================================================================
# Driver fixtures (tests/test_driver_contract.py, tests/test_property.py)
#
# The contract suite ships in the package (`khadem_lab.testing`: the checks, the harness, the
# pytest base class `DriverContract`). tests/test_driver_contract.py runs it against every driver
# through the parametrized `driver_case` fixture (Dramatiq's `@pytest.fixture(params=[...])`). A
# driver joins the suite by adding one `DriverCase` to `DRIVER_CASES`: a name, a
# `build(config, clock, registry, tmp_path)` function and its capabilities. A driver that needs a
# service (Redis) calls `pytest.skip(...)` from `build` when the service is missing on a laptop,
# and raises in CI.
#
# Capabilities (checks branch or skip on them explicitly, never silently):
#   runs_inline - jobs run inside dispatch (the sync driver): there is no queue for `reserve` or a
#                 worker to take from, and no lease to expire.
# ================================================================================================



class RowDriver(BaseQueueDriver):
    """A minimal third-party-style driver, written from the docstrings of `drivers/base.py` only.

    It stores each job as a JSON-ready row (`JobRecord.to_dict()`) and hands out fresh copies, as
    a database driver does. Running the contract suite against it checks that the suite is usable
    by other drivers and that the base class never relies on getting its own record objects back.
    O(n) everywhere: clarity over speed.
    """

    driver_type = "rows"
    serializes_jobs = True

    def __init__(
        self,
        config: DriverConfig | None = None,
        *,
        clock: Clock | None = None,
        registry: JobRegistry | None = None,
    ) -> None:
        super().__init__(config, clock=clock, registry=registry)
        self.rows: dict[str, dict[str, Any]] = {}  # dead rows are kept in the order they died
        self._last_seq = 0
        self.client_ids: dict[str, tuple[str, float]] = {}  # id -> (fingerprint, remembered until)

    def _next_seq(self) -> int:
        self._last_seq += 1
        return self._last_seq

    def _rows(self, status: JobStatus) -> list[dict[str, Any]]:
        return [row for row in self.rows.values() if row["status"] == status.value]

    async def push_records(self, records: Sequence[JobRecord]) -> None:
        for record in records:
            record.seq = self._next_seq()
            record.status = JobStatus.PENDING
            self.rows[record.id] = record.to_dict()

    async def push_new_records(
        self, records: Sequence[JobRecord], fingerprints: Sequence[str], now: float, remember_until: float
    ) -> list[str | None]:
        found: list[str | None] = []
        for record, mark in zip(records, fingerprints, strict=True):
            known = self.client_ids.get(record.id)
            if known is not None and (known[1] > now or record.id in self.rows):
                found.append(known[0])
            elif record.id in self.rows:
                found.append("")
            else:
                self.client_ids[record.id] = (mark, remember_until)
                await self.push_records([record])
                found.append(None)
        return found

    async def reserve_record(
        self, queues: Sequence[str] | None, now: float, worker: str | None
    ) -> JobRecord | None:
        ready = [row for row in self._rows(JobStatus.PENDING) if row["available_at"] <= now]
        order: Callable[[dict[str, Any]], tuple[float, int]] = lambda row: (row["available_at"], row["seq"])  # noqa: E731
        chosen = None
        if queues is None:
            chosen = min(ready, key=order, default=None)
        else:
            for queue in queues:
                chosen = min((row for row in ready if row["queue"] == queue), key=order, default=None)
                if chosen is not None:
                    break
        if chosen is None:
            return None
        chosen["status"] = JobStatus.RESERVED.value
        chosen["attempts"] += 1
        chosen["reserved_by"] = worker
        chosen["reserved_until"] = now + self.lease_seconds + (chosen["timeout"] or 0.0)
        return JobRecord.from_dict(chosen)

    def _holds(self, record: JobRecord) -> bool:
        """This delivery still holds the job: reserved, and with the attempts it was given."""
        row = self.rows.get(record.id)
        return row is not None and row["status"] == "reserved" and row["attempts"] == record.attempts

    async def ack_record(self, record: JobRecord) -> bool:
        if not self._holds(record):
            return False
        del self.rows[record.id]
        record.status, record.reserved_until = JobStatus.COMPLETED, None
        return True

    async def release_record(self, record: JobRecord) -> bool:
        if not self._holds(record):
            return False
        row = record.to_dict()
        row.update(
            status=JobStatus.PENDING.value, reserved_until=None, reserved_by=None, seq=self._next_seq()
        )
        self.rows[record.id] = row
        return True

    async def bury_record(self, record: JobRecord) -> bool:
        if not self._holds(record):
            return False
        row = record.to_dict()
        row.update(status=JobStatus.DEAD.value, reserved_until=None)
        del self.rows[record.id]
        self.rows[record.id] = row
        return True

    async def renew_records(self, records: Sequence[JobRecord], now: float) -> list[bool | None]:
        renewed: list[bool | None] = []
        for record in records:
            held = self._holds(record)
            if held:
                row = self.rows[record.id]
                row["reserved_until"] = max(row["reserved_until"], now + self.lease_seconds)
                record.reserved_until = row["reserved_until"]
            renewed.append(held)
        return renewed

    async def reclaim_expired(self, now: float) -> list[JobRecord]:
        expired = [r for r in self._rows(JobStatus.RESERVED) if r["reserved_until"] <= now]
        expired.sort(key=lambda row: (row["reserved_until"], row["seq"]))
        reclaimed = []
        for row in expired:
            row.update(reserved_until=None, reserved_by=None)
            if row["attempts"] >= row["max_retries"] + 1:
                row.update(
                    status=JobStatus.DEAD.value,
                    last_error=LEASE_EXPIRED_ERROR,
                    error_type="LeaseExpired",
                    failed_at=now,
                )
                self.rows[row["id"]] = self.rows.pop(row["id"])
            else:
                row.update(status=JobStatus.PENDING.value, available_at=now, seq=self._next_seq())
            reclaimed.append(JobRecord.from_dict(row))
        return reclaimed

    async def next_lease_expiry(self) -> float | None:
        return min((row["reserved_until"] for row in self._rows(JobStatus.RESERVED)), default=None)

    async def counts(self, now: float) -> QueueCounts:
        pending = self._rows(JobStatus.PENDING)
        ready = sum(1 for row in pending if row["available_at"] <= now)
        return QueueCounts(ready, len(pending) - ready, len(self._rows(JobStatus.RESERVED)))

    async def next_available_at(self, queues: Sequence[str] | None) -> float | None:
        times = [
            row["available_at"]
            for row in self._rows(JobStatus.PENDING)
            if queues is None or row["queue"] in queues
        ]
        return min(times, default=None)

    async def clear_records(self) -> int:
        doomed = [i for i, row in self.rows.items() if row["status"] != JobStatus.DEAD.value]
        for job_id in doomed:
            del self.rows[job_id]
        return len(doomed)

    async def dead_records(self, limit: int | None = None) -> list[JobRecord]:
        dead = [JobRecord.from_dict(row) for row in self._rows(JobStatus.DEAD)]
        return dead if limit is None else dead[:limit]

    async def get_dead_record(self, job_id: str) -> JobRecord | None:
        row = self.rows.get(job_id)
        return None if row is None or row["status"] != JobStatus.DEAD.value else JobRecord.from_dict(row)

    def _dead_ids(self, job_ids: Sequence[str] | None) -> list[str]:
        dead = [row["id"] for row in self._rows(JobStatus.DEAD)]
        return dead if job_ids is None else [i for i in dict.fromkeys(job_ids) if i in dead]

    async def requeue_dead_records(self, job_ids: Sequence[str] | None, now: float) -> list[JobRecord]:
        moved = []
        for job_id in self._dead_ids(job_ids):
            row = self.rows[job_id]
            row.update(
                status=JobStatus.PENDING.value,
                attempts=0,
                available_at=now,
                failed_at=None,
                seq=self._next_seq(),
            )
            moved.append(JobRecord.from_dict(row))
        return moved

    async def purge_dead_records(self, job_ids: Sequence[str] | None) -> list[JobRecord]:
        return [JobRecord.from_dict(self.rows.pop(job_id)) for job_id in self._dead_ids(job_ids)]


# -- Redis: the server the tests use, a fresh key prefix per queue, and only those keys deleted ----
REDIS_URL = os.environ.get("KHADEM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_redis_queues: list[str] = []  # queue names made by this test, their keys deleted at its teardown


def require_redis() -> None:
    """Skip the test if no Redis answers at REDIS_URL; fail instead when CI is "true"."""
    try:
        import redis
    except ImportError:  # the test extra installs redis-py
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("redis-py is not installed: pip install -e '.[test]'")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        message = f"no Redis server at {REDIS_URL} ({exc}); start redis-server or set KHADEM_TEST_REDIS_URL"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    finally:
        client.close()


def redis_queue_name(label: str = "test") -> str:
    """A queue name no other test uses (so its own key prefix); its keys go at teardown."""
    require_redis()
    name = f"test-{label}-{uuid.uuid4().hex[:12]}"
    _redis_queues.append(name)
    return name


def redis_keys(queue_name: str) -> list[str]:
    """Every key under the queue's prefix (SCAN, never KEYS)."""
    import redis

    with redis.Redis.from_url(REDIS_URL) as client:
        return sorted(k.decode() for k in client.scan_iter(match=f"khadem:{{{queue_name}}}:*", count=1000))


@pytest.fixture(autouse=True)
def _delete_redis_test_keys() -> Iterator[None]:
    yield
    if _redis_queues:
        import redis

        with redis.Redis.from_url(REDIS_URL) as client:
            while _redis_queues:
                keys = list(client.scan_iter(match=f"khadem:{{{_redis_queues.pop()}}}:*", count=1000))
                if keys:
                    client.delete(*keys)


def build_redis(config: DriverConfig, clock: Clock, registry: JobRegistry, _tmp: Path) -> BaseQueueDriver:
    return RedisStorageDriver(
        config, url=REDIS_URL, queue_name=redis_queue_name("contract"), clock=clock, registry=registry
    )


DRIVER_CASES = [
    DriverCase(
        "memory", lambda config, clock, registry, _: InMemoryDriver(config, clock=clock, registry=registry)
    ),
    DriverCase(
        "sync",
        lambda config, clock, registry, _: SynchronousDriver(config, clock=clock, registry=registry),
        runs_inline=True,
    ),
    DriverCase("rows", lambda config, clock, registry, _: RowDriver(config, clock=clock, registry=registry)),
    DriverCase(
        "sqlite",
        lambda config, clock, registry, tmp: SQLiteDriver(
            config, path=tmp / "queue.sqlite3", clock=clock, registry=registry
        ),
    ),
    DriverCase(  # a fresh directory per driver: a test may build several
        "file",
        lambda config, clock, registry, tmp: FileStorageDriver(
            config, storage_path=Path(mkdtemp(dir=tmp)) / "queue", clock=clock, registry=registry
        ),
    ),
    DriverCase("redis", build_redis),  # a fresh key prefix per driver; skipped without Redis (not in CI)
]


@pytest.fixture(params=DRIVER_CASES, ids=str)
def driver_case(request: pytest.FixtureRequest) -> DriverCase:
    case: DriverCase = request.param
    return case
