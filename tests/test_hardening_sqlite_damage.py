"""Issue 10, fault 4: a SQLite queue file that had content and lost it is not opened as an empty
queue."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from khadem_lab import DriverConfig, JobRegistry, Simulation, SQLiteDriver, StorageError

from .support import Invoice


def open_queue(sim: Simulation, path: Path) -> SQLiteDriver:
    registry = JobRegistry()
    registry.register(Invoice)
    return SQLiteDriver(DriverConfig(name="q"), path=path, clock=sim.clock, registry=registry)


def test_a_truncated_database_is_reported_not_opened_empty(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    with Simulation() as sim:
        driver = open_queue(sim, path)
        sim.run(driver.push(Invoice(1)))
        sim.run(driver.dispose())
        os.truncate(path, 0)
        with pytest.raises(StorageError) as info:
            open_queue(sim, path)
        message = str(info.value)
        assert str(path) in message and "truncated" in message
        assert path.stat().st_size == 0  # left as it was, for a person to look at


def test_a_moved_aside_database_starts_a_new_queue(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    with Simulation() as sim:
        driver = open_queue(sim, path)
        sim.run(driver.push(Invoice(1)))
        sim.run(driver.dispose())
        path.rename(tmp_path / "old.sqlite3")  # the documented way to start over
        driver = open_queue(sim, path)
        assert sim.run(driver.size()) == 0
        sim.run(driver.dispose())
        driver = open_queue(sim, path)  # and it reopens
        sim.run(driver.dispose())


def test_a_database_of_another_application_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 12345")
    conn.execute("CREATE TABLE people (name TEXT)")
    conn.commit()
    conn.close()
    with Simulation() as sim, pytest.raises(StorageError, match="not a khadem_lab queue"):
        open_queue(sim, path)


def test_a_queue_made_before_the_marker_existed_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    with Simulation() as sim:
        driver = open_queue(sim, path)
        sim.run(driver.push(Invoice(1)))
        sim.run(driver.dispose())
        Path(f"{path}-khadem").unlink()
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA application_id = 0")
        conn.commit()
        conn.close()
        driver = open_queue(sim, path)
        assert sim.run(driver.size()) == 1
        sim.run(driver.dispose())
        assert Path(f"{path}-khadem").exists()
