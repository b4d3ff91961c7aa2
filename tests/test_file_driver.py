"""The file driver on real files: restarts, torn and corrupt files, permissions, two drivers on one
directory, linear cost, and the memory driver's model checks with restarts in between.

Everything runs on the virtual clock except the one test that starts a real process. The contract
suite runs on this driver too (``conftest.DRIVER_CASES``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import pytest
from hypothesis.stateful import rule

from khadem_lab import (
    ConfigError,
    DriverConfig,
    EventKind,
    EventLog,
    FileStorageDriver,
    JobRecord,
    JobRegistry,
    QueueJob,
    QueueManager,
    Simulation,
    StorageError,
    Worker,
)

from .test_property import LEASE, MemoryDriverMachine, StoredNoops, machine_settings

K = EventKind
MakeDriver = Callable[..., FileStorageDriver]


@dataclass
class Task(QueueJob):
    name: str = "task"
    fail: bool = False
    retry_delay = timedelta(seconds=10)

    async def handle(self) -> str:
        if self.fail:
            raise RuntimeError(f"{self.name} failed")
        return self.name


class Doomed(Task):
    max_retries = 0


def registry_of(*classes: type[QueueJob]) -> JobRegistry:
    registry = JobRegistry()
    for cls in classes:
        registry.register(cls)
    return registry


@pytest.fixture
def sim() -> Iterator[Simulation]:
    simulation = Simulation()
    yield simulation
    simulation.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "storage" / "queue"


@pytest.fixture
def make(sim: Simulation, path: Path) -> Iterator[MakeDriver]:
    """``make(registry=..., fsync=..., **DriverConfig fields)``: a driver on ``path`` (a new one
    each call: a second call on the same path is a restart, or a second process)."""
    made: list[FileStorageDriver] = []

    def build(
        registry: JobRegistry | None = None, fsync: str = "always", at: Path | None = None, **config: Any
    ) -> FileStorageDriver:
        driver = FileStorageDriver(
            DriverConfig(name="file", **config),
            storage_path=at or path,
            fsync=fsync,
            clock=sim.clock,
            registry=registry or registry_of(Task, Doomed),
        )
        made.append(driver)
        return driver

    yield build
    for driver in made:
        sim.run(driver.dispose())


def journal_lines(path: Path, generation: int = 1) -> list[bytes]:
    return (path / f"journal-{generation}.log").read_bytes().splitlines(keepends=True)


def snapshot_of(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((path / "main.json").read_bytes())
    return data


# ============================================================================== restart
def test_every_job_survives_a_restart_with_its_state_and_attempts(
    sim: Simulation, path: Path, make: MakeDriver
) -> None:
    # Given a queue with a dead letter, a job held by a worker that then vanishes, a job waiting
    # for its retry, a ready job and a delayed one
    first = make()
    t0 = sim.time()
    doomed = sim.run(first.push(Doomed("doomed", fail=True)))
    assert sim.run(first.process()) is True
    held = sim.run(first.push(Task("held")))
    record = sim.run(first.reserve(None, worker="w1"))
    assert record is not None and record.id == held
    retried = sim.run(first.push(Task("retried")))
    record = sim.run(first.reserve(None, worker="w1"))
    assert record is not None and record.id == retried
    record.available_at, record.last_error, record.error_type = t0 + 30, "RuntimeError: boom", "RuntimeError"
    sim.run(first.release_record(record))
    ready = sim.run(first.push(Task("ready")))
    later = sim.run(first.push(Task("later"), 600))
    # When the process goes away and another one opens the same directory
    sim.run(first.dispose())
    second = make()
    # Then everything is there, as it was
    assert sim.run(second.counts(sim.time())) == (1, 2, 1)
    (dead,) = sim.run(second.dead_letters.list())
    assert (dead.id, dead.attempts, dead.error, dead.error_type) == (
        doomed,
        1,
        "RuntimeError: doomed failed",
        "RuntimeError",
    )
    assert dead.payload == {"name": "doomed", "fail": True}
    assert sim.run(second.next_lease_expiry()) == t0 + 300
    taken = sim.run(second.reserve(None, worker="w2"))
    assert taken is not None and (taken.id, taken.attempts) == (ready, 1)
    sim.run(second.ack_record(taken))
    sim.advance(30)
    taken = sim.run(second.reserve(None, worker="w2"))
    assert taken is not None and (taken.id, taken.attempts, taken.last_error) == (
        retried,
        2,
        "RuntimeError: boom",
    )
    sim.run(second.ack_record(taken))
    sim.advance(270)  # the vanished worker's lease ends: its job comes back, attempt counted
    taken = sim.run(second.reserve(None, worker="w2"))
    assert taken is not None and (taken.id, taken.attempts) == (held, 2)
    assert sim.run(second.next_available_at(None)) == t0 + 600
    new_id = sim.run(second.push(Task("new")))
    assert new_id not in {doomed, held, retried, ready, later}
    assert sorted(p.name for p in path.iterdir()) == ["journal-1.log", "lock", "main.json"]


def test_ids_are_the_same_on_every_run_of_the_same_operations(tmp_path: Path) -> None:
    def run(where: Path) -> list[str]:
        simulation = Simulation()
        driver = FileStorageDriver(storage_path=where, clock=simulation.clock, registry=registry_of(Task))
        try:
            ids = simulation.run(driver.push_many([Task("a"), Task("b")]))
            assert simulation.run(driver.process()) is True
            return [*ids, simulation.run(driver.push(Task("c")))]
        finally:
            simulation.run(driver.dispose())
            simulation.close()

    assert run(tmp_path / "one") == run(tmp_path / "two") == ["1", "2", "3"]


# ============================================================================== damaged files
def test_a_torn_last_line_is_cut_off_and_the_rest_kept(
    path: Path, make: MakeDriver, sim: Simulation, caplog: pytest.LogCaptureFixture
) -> None:
    first = make()
    ids = sim.run(first.push_many([Task("a"), Task("b")]))
    sim.run(first.dispose())
    journal = path / "journal-1.log"
    size = journal.stat().st_size
    with journal.open("ab") as f:  # a crash in the middle of writing the next line
        f.write(b'{"op":"push","jobs":[{"id":"3","type":"Ta')
    with caplog.at_level(logging.WARNING):
        second = make()
    assert sim.run(second.counts(sim.time())) == (2, 0, 0)
    assert [r.id for r in iter(lambda: sim.run(second.reserve(None, worker="w")), None)] == ids
    assert journal.stat().st_size > size  # cut back, then the two reserves appended
    assert journal.read_bytes().count(b"\n") == 3 and b'"id":"3"' not in journal.read_bytes()
    assert f"{journal}: cut off a torn last line of 41 bytes at offset {size}" in caplog.text
    assert not list(path.glob("*.corrupt-*"))


def test_unreadable_lines_in_the_journal_are_quarantined_and_the_rest_kept(
    path: Path, make: MakeDriver, sim: Simulation, caplog: pytest.LogCaptureFixture
) -> None:
    first = make()
    ids = [sim.run(first.push(Task(name))) for name in ("a", "b", "c")]
    sim.run(first.dispose())
    lines = journal_lines(path)
    garbage = [b"\x00\x00\x00 not json at all\n", b'{"op":"push","jobs":[{"id":"9"}]}\n']
    (path / "journal-1.log").write_bytes(lines[0] + b"".join(garbage) + b"".join(lines[1:]))
    with caplog.at_level(logging.WARNING):
        second = make()
    # the three jobs are there, in order
    assert sim.run(second.counts(sim.time())) == (3, 0, 0)
    assert [r.id for r in iter(lambda: sim.run(second.reserve(None, worker="w")), None)] == ids
    # the bad bytes are kept aside, and the log says where they were and what was wrong
    corrupt = path / "journal-1.log.corrupt-1"
    assert corrupt.read_bytes() == b"".join(garbage)
    assert stat.S_IMODE(corrupt.stat().st_mode) == 0o600
    assert f"{path / 'journal-1.log'}: 2 unreadable line(s), the first at byte {len(lines[0])}" in caplog.text
    assert f"moved {len(b''.join(garbage))} bytes aside to {corrupt}" in caplog.text
    # and the damaged journal was replaced by a clean snapshot: a third process finds nothing wrong
    assert not (path / "journal-1.log").exists() and (path / "journal-2.log").exists()
    assert [job["id"] for job in snapshot_of(path)["jobs"]] == ids
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        third = make()
    assert sim.run(third.counts(sim.time())) == (0, 0, 3)
    assert caplog.text == "" and len(list(path.glob("*.corrupt-*"))) == 1


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: b"{ this is not json", "not valid JSON"),
        (lambda data: data[: len(data) // 2], "it looks truncated"),
        (lambda data: b"", "the snapshot is empty"),
        (lambda data: b'{"jobs": 3}', 'not a queue snapshot (expected an object with a "jobs" list)'),
    ],
    ids=["garbage", "truncated", "empty", "wrong-shape"],
)
def test_an_unreadable_snapshot_raises_a_storage_error_naming_the_file(
    path: Path, make: MakeDriver, sim: Simulation, damage: Callable[[bytes], bytes], message: str
) -> None:
    first = make()
    sim.run(first.push_many([Task("a"), Task("b"), Task("c")]))
    sim.run(first.compact())
    sim.run(first.dispose())
    snapshot = path / "main.json"
    damaged = damage(snapshot.read_bytes())
    snapshot.write_bytes(damaged)
    with pytest.raises(StorageError) as caught:
        make()
    assert str(caught.value).startswith(f"file queue storage {snapshot}: ")
    assert message in str(caught.value)
    assert snapshot.read_bytes() == damaged  # left as it was, for a human to look at


def test_a_damaged_job_in_the_snapshot_is_quarantined_and_the_others_kept(
    path: Path, make: MakeDriver, sim: Simulation, caplog: pytest.LogCaptureFixture
) -> None:
    first = make()
    a, _, c = sim.run(first.push_many([Task("a"), Task("b"), Task("c")]))
    sim.run(first.compact())
    sim.run(first.dispose())
    lines = (path / "main.json").read_bytes().split(b"\n")
    assert b'"id":"2"' in lines[2]
    lines[2] = b'{"id":"2","type":"Task",\xff\xfe,'
    (path / "main.json").write_bytes(b"\n".join(lines))
    with caplog.at_level(logging.WARNING):
        second = make()
    assert [r.id for r in iter(lambda: sim.run(second.reserve(None, worker="w")), None)] == [a, c]
    assert (path / "main.json.corrupt-1").read_bytes() == lines[2] + b"\n"
    assert f"{path / 'main.json'}: line 3 cannot be read" in caplog.text


def test_a_missing_snapshot_beside_a_journal_is_an_error_not_an_empty_queue(
    path: Path, make: MakeDriver, sim: Simulation
) -> None:
    first = make()
    sim.run(first.push(Task("a")))
    sim.run(first.dispose())
    (path / "main.json").unlink()
    with pytest.raises(
        StorageError, match=r"main\.json: is missing but journal-1\.log hold queue operations"
    ):
        make()


def test_a_compaction_cut_short_by_a_crash_loses_and_repeats_nothing(
    path: Path, make: MakeDriver, sim: Simulation
) -> None:
    first = make()
    ids = sim.run(first.push_many([Task("a"), Task("b")]))
    old_journal = (path / "journal-1.log").read_bytes()
    sim.run(first.compact())
    sim.run(first.dispose())
    # Crash after the new snapshot was in place but before the old journal was deleted:
    # the old journal must not be replayed a second time on top of the snapshot
    (path / "journal-1.log").write_bytes(old_journal)
    second = make()
    assert sim.run(second.counts(sim.time())) == (2, 0, 0)
    assert not (path / "journal-1.log").exists()
    sim.run(second.dispose())
    # Crash while writing the next snapshot: the half-written files are ignored and removed
    (path / "main.json.tmp").write_bytes(b'{"format":1,"generation":3,"seq":99,"jobs":[\n{"id":')
    (path / "journal-3.log").write_bytes(b'{"op":"clear"}\n')
    third = make()
    assert [r.id for r in iter(lambda: sim.run(third.reserve(None, worker="w")), None)] == ids
    assert sorted(p.name for p in path.iterdir()) == ["journal-2.log", "lock", "main.json"]


# ============================================================================== files and stats
def test_storage_is_readable_by_its_owner_only(path: Path, make: MakeDriver, sim: Simulation) -> None:
    driver = make()
    sim.run(driver.push(Task("secret")))
    sim.run(driver.compact())
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    for name in ("main.json", "journal-2.log", "lock"):
        assert stat.S_IMODE((path / name).stat().st_mode) == 0o600, name


def test_get_stats_lists_the_storage_files(path: Path, make: MakeDriver, sim: Simulation) -> None:
    driver = make()
    sim.run(driver.push(Task("a")))
    stats = sim.run(driver.get_stats())
    assert stats["storage_files"] == [str(path / "main.json"), str(path / "journal-1.log")]
    assert all(Path(f).is_file() for f in stats["storage_files"])
    assert (stats["driver_type"], stats["queue_depth"], stats["storage_path"]) == ("file", 1, str(path))
    sim.run(driver.compact())
    assert sim.run(driver.get_stats())["storage_files"][1] == str(path / "journal-2.log")


def test_a_stored_job_of_an_unregistered_type_is_dead_lettered_with_the_reason(
    make: MakeDriver, sim: Simulation
) -> None:
    job_id = sim.run(make().push(Task("orphan")))
    registry = JobRegistry()  # a process that does not know Task
    other = make(registry=registry)
    log = EventLog()
    other.subscribe(log)
    assert sim.run(other.process()) is True
    (dead,) = sim.run(other.dead_letters.list())
    assert (dead.id, dead.type, dead.error_type, dead.payload) == (
        job_id,
        "Task",
        "UnregisteredJobError",
        {"name": "orphan", "fail": False},
    )
    assert dead.error is not None and dead.error.startswith(
        "UnregisteredJobError: job type 'Task' is not registered (registered: none)"
    )
    assert [e.kind for e in log.events] == [K.RESERVED, K.DEAD_LETTERED]
    registry.register(Task)  # fixed: it can be requeued and runs
    assert sim.run(other.dead_letters.requeue(job_id)) is True
    assert sim.run(other.process()) is True
    assert [e.kind for e in log.events][-3:] == [K.RESERVED, K.STARTED, K.COMPLETED]


# ============================================================================== shared directory
def test_two_drivers_on_one_directory_see_each_others_jobs(
    path: Path, make: MakeDriver, sim: Simulation
) -> None:
    a, b = make(poll_interval=timedelta(seconds=1)), make(poll_interval=timedelta(seconds=1))
    job_id = sim.run(a.push(Task("shared")))
    taken = sim.run(b.reserve(None, worker="b"))
    assert taken is not None and taken.id == job_id
    assert sim.run(a.reserve(None, worker="a")) is None  # never handed out twice
    assert sim.run(a.counts(sim.time())) == (0, 0, 1)
    sim.run(b.ack_record(taken))
    assert sim.run(a.counts(sim.time())) == (0, 0, 0)
    # a worker on b picks up what a dispatches, at its next poll
    log = EventLog()
    b.subscribe(log)
    worker = Worker(b, name="wb")
    worker.task = sim.spawn(worker.run(), name="wb")
    sim.advance(0.5)
    t = sim.time()
    late = sim.run(a.push(Task("from-a")))
    sim.advance(1)
    assert [(e.job_id, e.time - t) for e in log.events if e.kind is K.COMPLETED] == [(late, 0.5)]
    # a compaction by one is seen by the other, which reloads and goes on
    sim.run(a.compact())
    last = sim.run(a.push(Task("after-compaction")))
    sim.advance(1)
    assert [e.job_id for e in log.events if e.kind is K.COMPLETED] == [late, last]
    assert sim.run(b.get_stats())["storage_files"][1] == str(path / "journal-2.log")
    sim.run(worker.stop())


def test_a_settled_job_whose_lease_ended_is_left_to_its_new_holder(
    make: MakeDriver, sim: Simulation, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = make(lease_time=timedelta(seconds=60)), make(lease_time=timedelta(seconds=60))
    sim.run(a.push(Task("slow")))
    mine = sim.run(a.reserve(None, worker="slow-worker"))
    sim.advance(60)
    theirs = sim.run(b.reserve(None, worker="b"))  # the lease ended: b takes the job
    assert mine is not None and theirs is not None and theirs.id == mine.id and theirs.attempts == 2
    with caplog.at_level(logging.WARNING):
        sim.run(a.ack_record(mine))  # too late: b's run is not cancelled or removed
    assert "is no longer reserved under this lease" in caplog.text
    assert sim.run(a.counts(sim.time())) == (0, 0, 1)
    sim.run(b.ack_record(theirs))
    assert sim.run(a.counts(sim.time())) == (0, 0, 0)


# ============================================================================== cost
def test_cost_per_job_does_not_grow_with_the_jobs_stored(
    path: Path, make: MakeDriver, sim: Simulation
) -> None:
    driver = make(fsync="never")
    snapshot = path / "main.json"
    before = snapshot.stat()
    journal = path / "journal-1.log"
    n = 20_000

    async def dispatch(count: int) -> None:
        for i in range(count):
            await driver.push(Task(f"j{i}"))

    sim.run(dispatch(n // 2))
    first_half = journal.stat().st_size
    sim.run(dispatch(n // 2))
    second_half = journal.stat().st_size - first_half
    # one line per job, the same size whether 0 or 10,000 jobs were stored (ids get one digit longer)
    assert abs(second_half - first_half) < 0.02 * first_half
    after = snapshot.stat()
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)  # no rewrite per job

    async def work() -> int:
        done = 0
        while await driver.process():
            done += 1
        return done

    assert sim.run(work()) == n
    assert sim.run(driver.size()) == 0
    # the journal was compacted along the way, a few times, not once per job
    generation = int((path / "lock").read_bytes())
    assert 1 < generation <= 10
    assert snapshot_of(path)["generation"] == generation
    assert sorted(p.name for p in path.iterdir()) == [f"journal-{generation}.log", "lock", "main.json"]
    assert (path / f"journal-{generation}.log").stat().st_size < FileStorageDriver.COMPACT_MIN_BYTES + 1000


# ============================================================================== config
def test_the_driver_is_built_from_a_config(tmp_path: Path, sim: Simulation) -> None:
    where = tmp_path / "q"
    entry = {"driver": "file", "path": str(where), "fsync": "never", "max_retries": 1}
    qm = QueueManager({"queue": {"default": "f", "drivers": {"f": entry}}}, clock=sim.clock)
    qm.load_from_config()
    driver = qm.driver
    assert isinstance(driver, FileStorageDriver)
    assert (driver.storage_path, driver.fsync, driver.config.max_retries) == (where, "never", 1)
    assert (where / "main.json").is_file()
    sim.run(qm.dispose())
    with pytest.raises(
        ConfigError,
        match=r"queue\.drivers\.f\.fsync = 'sometimes'; expected one of 'dispatch', 'always', 'never'",
    ):
        QueueManager(
            {"queue": {"default": "f", "drivers": {"f": {**entry, "fsync": "sometimes"}}}}, clock=sim.clock
        ).load_from_config()
    with pytest.raises(
        ConfigError, match=r"queue\.drivers\.f\.table .*options of a .file. driver: path, fsync"
    ):
        QueueManager(
            {"queue": {"default": "f", "drivers": {"f": {**entry, "table": "jobs"}}}}, clock=sim.clock
        ).load_from_config()


@pytest.mark.realtime
def test_a_fresh_process_dispatches_from_a_config_and_this_one_sees_the_job(tmp_path: Path) -> None:
    where = tmp_path / "q"
    config = {"queue": {"default": "f", "drivers": {"f": {"driver": "file", "path": str(where)}}}}
    child = (
        "import asyncio, json, sys\n"
        "from khadem_lab import QueueManager\n"
        "from tests.worker_process import Numbered\n"
        "async def main():\n"
        "    qm = QueueManager(json.loads(sys.argv[1])); qm.load_from_config()\n"
        "    print(await qm.dispatch(Numbered(7)))\n"
        "    await qm.dispose()\n"
        "asyncio.run(main())\n"
    )
    root = Path(__file__).parent.parent
    done = subprocess.run(
        [sys.executable, "-c", child, json.dumps(config)],
        cwd=root,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    from .worker_process import Numbered

    async def take() -> JobRecord | None:  # on the system clock, as the job was dispatched
        driver = FileStorageDriver(storage_path=where, registry=registry_of(Numbered))
        try:
            return await driver.reserve(None, worker="here")
        finally:
            await driver.dispose()

    record = asyncio.run(take())
    assert record is not None
    assert (record.id, record.type, record.payload) == (
        done.stdout.decode().strip(),
        "Numbered",
        {"n": 7, "work": 0.0},
    )


# ============================================================================== model checks
class FileDriverMachine(MemoryDriverMachine):
    """The memory driver's model checks (tests/test_property.py) on the file driver, compacting
    often, with a second driver on the same directory that must agree after every step, and
    restarts (a new driver replaces the first, replaying the files)."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(mkdtemp(prefix="file-machine-"))
        self.driver = self._open()
        self.log = EventLog()
        self.driver.subscribe(self.log)
        self.other = self._open()

    def _open(self) -> FileStorageDriver:
        driver = FileStorageDriver(
            DriverConfig(name="prop", lease_time=timedelta(seconds=LEASE)),
            storage_path=self.tmp / "queue",
            fsync="never",
            clock=self.sim.clock,
            registry=StoredNoops(),
        )
        driver.COMPACT_MIN_BYTES = 4096  # compact often
        return driver

    def teardown(self) -> None:
        self.sim.run(self.driver.dispose())
        self.sim.run(self.other.dispose())
        super().teardown()
        shutil.rmtree(self.tmp)

    @rule()
    def restart(self) -> None:
        self.sim.run(self.driver.dispose())
        self.driver = self._open()
        self.driver.subscribe(self.log)

    @rule()
    def compact(self) -> None:
        self.sim.run(self.driver.compact())


FileDriverMachine.TestCase.settings = machine_settings(60)
TestFileDriverAgainstModel = FileDriverMachine.TestCase


@pytest.mark.parametrize(
    ("fsync", "flushed"),
    [("dispatch", ["push", "requeue"]), ("always", ["push", "reserve", "bury", "requeue"]), ("never", [])],
)
def test_which_operations_reach_the_disk_before_returning(
    sim: Simulation,
    make: MakeDriver,
    path: Path,
    fsync: str,
    flushed: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fsync modes, as documented: with "dispatch" only the lines that would lose a job if a
    power loss undid them (a dispatch, a requeue) are flushed before the call returns."""
    driver = make(fsync=fsync, max_retries=0)
    journal = path / "journal-1.log"
    synced: list[str] = []
    real_fsync = os.fsync

    def watch(fd: int) -> None:
        if os.path.realpath(f"/proc/self/fd/{fd}") == str(journal.resolve()):
            synced.append(json.loads(journal.read_bytes().splitlines()[-1])["op"])
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", watch)
    sim.run(driver.push(Doomed("x", fail=True)))
    sim.run(driver.process())  # reserve, fail, bury
    sim.run(driver.dead_letters.requeue_all())
    assert synced == flushed
