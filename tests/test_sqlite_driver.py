"""The SQLite driver's own promises: restart, bad input, permissions, config. (The contract suite
in test_driver_contract.py and the process tests in test_processes.py cover the rest.)"""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from khadem_lab import (
    ConfigError,
    DriverConfig,
    EventKind,
    EventLog,
    JobRegistry,
    QueueManager,
    Simulation,
    SQLiteDriver,
    StorageError,
    UnregisteredJobError,
)

from .support import Invoice


@pytest.fixture
def sim() -> Iterator[Simulation]:
    with Simulation() as simulation:
        yield simulation


@pytest.fixture
def registry() -> JobRegistry:
    jobs = JobRegistry()
    jobs.register(Invoice)
    return jobs


def make(sim: Simulation, path: Path, registry: JobRegistry, **config: object) -> SQLiteDriver:
    return SQLiteDriver(DriverConfig(name="db", **config), path=path, clock=sim.clock, registry=registry)  # type: ignore[arg-type]


def test_jobs_and_their_state_survive_a_restart(
    sim: Simulation, tmp_path: Path, registry: JobRegistry
) -> None:
    path = tmp_path / "queue.sqlite3"
    first = make(sim, path, registry)
    sim.run(first.push(Invoice(1)))
    sim.run(first.push(Invoice(2), delay=timedelta(hours=1)))
    sim.run(first.push(Invoice(3, fail=True)))
    sim.run(first.push(Invoice(4, fail=True)))
    assert sim.run(first.process()) and sim.run(first.process())  # 1 done, 3 failed once: retry
    sim.advance(seconds=10)
    sim.run(first.process())  # 4 fails its first attempt
    sim.run(first.process())  # 3 fails its last attempt: dead
    sim.run(first.dispose())

    again = make(sim, path, registry)
    stats = sim.run(again.get_stats())
    assert (stats["ready_jobs"], stats["delayed_jobs"], stats["processing_count"]) == (0, 2, 0)
    assert stats["dlq"] == {"total_jobs": 1, "jobs_by_type": {"Invoice": 1}}
    dead = sim.run(again.dead_letters.list())
    assert [(d.payload, d.attempts, d.error) for d in dead] == [
        ({"number": 3, "fail": True}, 2, "RuntimeError: invoice 3 failed")
    ]
    sim.advance(seconds=10)  # job 4's retry is due: it comes back with its attempt counted
    record = sim.run(again.reserve(None, worker="w"))
    assert record is not None and record.payload == {"number": 4, "fail": True} and record.attempts == 2


def test_ids_are_unique_across_drivers_on_one_file(
    sim: Simulation, tmp_path: Path, registry: JobRegistry
) -> None:
    path = tmp_path / "queue.sqlite3"
    a, b = make(sim, path, registry), make(sim, path, registry)
    ids = [
        sim.run(a.push(Invoice(1))),
        sim.run(b.push(Invoice(2))),
        *sim.run(a.push_many([Invoice(3), Invoice(4)])),
    ]
    assert ids == ["1", "2", "3", "4"]  # from the database's counter: unique, and the same every run
    taken = [sim.run(d.reserve(None, worker="w")) for d in (b, a, b, a, b)]
    assert [r.id if r else None for r in taken] == ["1", "2", "3", "4", None]


def test_a_file_that_is_not_a_database_is_a_clear_error(sim: Simulation, tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError, match=r"queue\.sqlite3.*cannot be used.*move it aside"):
        SQLiteDriver(DriverConfig(name="db"), path=path, clock=sim.clock)
    assert path.read_bytes().startswith(b"this is not")  # left as it was: nothing destroyed


def test_a_damaged_payload_is_dead_lettered_and_the_worker_goes_on(
    sim: Simulation, tmp_path: Path, registry: JobRegistry
) -> None:
    path = tmp_path / "queue.sqlite3"
    driver = make(sim, path, registry)
    qm = QueueManager(driver=driver, clock=sim.clock)
    log = EventLog()
    qm.subscribe(log)
    sim.run(qm.dispatch_batch([Invoice(1), Invoice(2)]))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE jobs SET payload = '{broken' WHERE id = '1'")
    sim.run(qm.start_worker(max_jobs=2))
    dead = sim.run(driver.dead_letters.list())
    assert [(d.id, d.error_type) for d in dead] == [("1", "SerializationError")]
    assert "not a JSON object: '{broken'" in (dead[0].error or "")
    assert [e.job_id for e in log.of_kind(EventKind.COMPLETED)] == ["2"]


def test_an_unregistered_stored_type_is_dead_lettered_with_the_reason(
    sim: Simulation, tmp_path: Path, registry: JobRegistry
) -> None:
    path = tmp_path / "queue.sqlite3"
    sim.run(make(sim, path, registry).push(Invoice(1)))
    stranger = make(sim, path, JobRegistry())  # a process that never registered Invoice
    assert sim.run(stranger.process()) is True
    dead = sim.run(stranger.dead_letters.list())
    assert [d.error_type for d in dead] == ["UnregisteredJobError"]
    assert "register_queue_jobs([Invoice])" in (dead[0].error or "")


def test_dispatching_an_unregistered_type_fails_before_anything_is_written(
    sim: Simulation, tmp_path: Path
) -> None:
    driver = make(sim, tmp_path / "queue.sqlite3", JobRegistry())
    with pytest.raises(UnregisteredJobError):
        sim.run(driver.push(Invoice(1)))
    assert sim.run(driver.size()) == 0


def test_storage_is_readable_by_its_owner_only(
    sim: Simulation, tmp_path: Path, registry: JobRegistry
) -> None:
    path = tmp_path / "deep" / "queue.sqlite3"
    driver = make(sim, path, registry)
    sim.run(driver.push(Invoice(1)))
    stats = sim.run(driver.get_stats())
    assert str(path) in stats["storage_files"] and f"{path}-wal" in stats["storage_files"]
    for name in stats["storage_files"]:
        assert stat.S_IMODE(Path(name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_config_selects_it_and_refuses_bad_options(sim: Simulation, tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    qm = QueueManager(
        {"queue": {"drivers": {"db": {"driver": "sqlite", "path": str(path), "fsync": "always"}}}},
        clock=sim.clock,
    )
    qm.load_from_config()
    assert isinstance(qm.driver, SQLiteDriver) and qm.driver.fsync == "always" and qm.driver.path == path
    bad = QueueManager(
        {"queue": {"drivers": {"db": {"driver": "sqlite", "fsync": "sometimes"}}}}, clock=sim.clock
    )
    with pytest.raises(ConfigError, match=r"fsync.*'sometimes'.*dispatch, always, never"):
        bad.load_from_config()
    typo = QueueManager({"queue": {"drivers": {"db": {"driver": "sqlite", "pth": "x"}}}}, clock=sim.clock)
    with pytest.raises(
        ConfigError, match=r"queue\.drivers\.db\.pth.*options of a .sqlite. driver: path, fsync, busy_timeout"
    ):
        typo.load_from_config()
