"""Issue 10, fault 5: storage files never follow symlinks, world-writable storage is refused,
missing parent directories are created owner-only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from khadem_lab import DriverConfig, FileStorageDriver, JobRegistry, Simulation, SQLiteDriver, StorageError

from .support import Invoice


@pytest.fixture
def registry() -> JobRegistry:
    jobs = JobRegistry()
    jobs.register(Invoice)
    return jobs


def file_driver(sim: Simulation, path: Path, registry: JobRegistry) -> FileStorageDriver:
    return FileStorageDriver(DriverConfig(name="q"), storage_path=path, clock=sim.clock, registry=registry)


@pytest.mark.parametrize("planted", ["main.json.tmp", "journal-2.log"])
def test_a_planted_symlink_never_makes_compact_overwrite_its_target(
    planted: str, tmp_path: Path, registry: JobRegistry
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    path = tmp_path / "q"
    with Simulation() as sim:
        driver = file_driver(sim, path, registry)
        sim.run(driver.push(Invoice(1)))
        (path / planted).symlink_to(victim)  # planted by someone who can write the directory
        with pytest.raises(StorageError) as info:
            sim.run(driver.compact())
        assert planted in str(info.value) and "symbolic link" in str(info.value)
        assert victim.read_text() == "precious\n"
        assert (path / planted).is_symlink()  # left for a person to look at
        assert sim.run(driver.size()) == 1  # the queue still works
        sim.run(driver.dispose())


def test_a_symlinked_sqlite_database_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.sqlite3"
    victim.write_bytes(b"")
    link = tmp_path / "q.sqlite3"
    link.symlink_to(victim)
    with pytest.raises(StorageError, match="symbolic link"):
        SQLiteDriver(DriverConfig(name="q"), path=link)
    assert victim.read_bytes() == b""


def test_a_symlinked_sqlite_wal_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path = tmp_path / "q.sqlite3"
    Path(f"{path}-wal").symlink_to(victim)
    with pytest.raises(StorageError, match="symbolic link"):
        SQLiteDriver(DriverConfig(name="q"), path=path)
    assert victim.read_text() == "precious\n"


def test_missing_parent_directories_are_created_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        SQLiteDriver(DriverConfig(name="q"), path=tmp_path / "a" / "b" / "q.sqlite3")
        FileStorageDriver(DriverConfig(name="f"), storage_path=tmp_path / "c" / "d" / "queue")
    finally:
        os.umask(old)
    for directory in ("a", "a/b", "c", "c/d", "c/d/queue"):
        assert stat.S_IMODE((tmp_path / directory).stat().st_mode) == 0o700, directory


def test_a_world_writable_storage_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q"
    path.mkdir()
    path.chmod(0o777)
    with pytest.raises(StorageError, match="world-writable"):
        FileStorageDriver(DriverConfig(name="q"), storage_path=path)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # no sticky bit: anyone may replace the database or plant its -wal
    with pytest.raises(StorageError, match="world-writable"):
        SQLiteDriver(DriverConfig(name="q"), path=shared / "q.sqlite3")
    assert list(shared.iterdir()) == []


def test_a_world_writable_database_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    SQLiteDriver(DriverConfig(name="q"), path=path)
    path.chmod(0o666)
    with pytest.raises(StorageError, match="world-writable"):
        SQLiteDriver(DriverConfig(name="q"), path=path)


def test_a_sticky_world_writable_directory_like_tmp_is_allowed_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    SQLiteDriver(DriverConfig(name="q"), path=shared / "q.sqlite3")
    assert "world-writable" in caplog.text
