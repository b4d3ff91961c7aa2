"""Issue 10, fault 3: every bad input is a clear KhademLabError naming the key (or path) and the
value the user gave, with advice that fits the cause."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from khadem_lab import (
    ConfigError,
    DriverConfig,
    FileStorageDriver,
    KhademLabError,
    QueueManager,
    SQLiteDriver,
    StorageError,
)
from khadem_lab.drivers.sqlite import _storage_error


def load(entry: dict[str, Any]) -> QueueManager:
    qm = QueueManager({"queue": {"default": "q", "drivers": {"q": entry}}})
    qm.load_from_config()
    return qm


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("lease_time", 1e16, "1e+16"),
        ("timeout", 1e300, "1e+300"),
        ("poll_interval", 1e-9, "1e-09"),
        ("lease_time", float("nan"), "nan"),
        ("poll_interval", float("inf"), "inf"),
        ("timeout", -1, "-1"),
        ("lease_time", "5", "'5'"),
    ],
)
def test_durations_out_of_range_name_the_key_and_the_value_given(key: str, value: Any, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({"driver": "memory", key: value})
    message = str(info.value)
    assert f"queue.drivers.q.{key} = {shown};" in message
    assert "timedelta(0)" not in message
    assert "seconds" in message


def test_driver_config_checks_timedelta_ranges_too() -> None:
    from datetime import timedelta

    with pytest.raises(ConfigError, match="lease_time"):
        DriverConfig(name="q", lease_time=timedelta(days=999_999))
    DriverConfig(name="q", poll_interval=timedelta(microseconds=1))  # the finest a timedelta holds


@pytest.mark.parametrize("value", ["x", -1, float("nan"), True, None])
def test_busy_timeout_must_be_a_number_of_seconds(value: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load({"driver": "sqlite", "path": str(tmp_path / "q.sqlite3"), "busy_timeout": value})
    assert f"queue.drivers.q.busy_timeout = {value!r}" in str(info.value)
    assert not (tmp_path / "q.sqlite3").exists()


@pytest.mark.parametrize("kind", ["sqlite", "file"])
@pytest.mark.parametrize("value", ["", "   ", 5, None, ":memory:"])
def test_a_durable_driver_refuses_a_path_that_is_not_a_file_path(
    kind: str, value: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load({"driver": kind, "path": value})
    assert f"queue.drivers.q.path = {value!r}" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing created (no file named ':memory:')


def test_sqlite_path_that_is_a_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(KhademLabError) as info:
        SQLiteDriver(DriverConfig(name="q"), path=tmp_path)
    assert str(tmp_path) in str(info.value) and "directory" in str(info.value)


def test_sqlite_cannot_open_names_the_path_not_a_raw_sqlite_error(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(StorageError) as info:
        SQLiteDriver(DriverConfig(name="q"), path=blocked / "sub" / "q.sqlite3")
    assert str(blocked) in str(info.value)


def test_file_driver_path_that_is_a_file_is_named(tmp_path: Path) -> None:
    target = tmp_path / "plain"
    target.write_text("x")
    with pytest.raises(StorageError) as info:
        FileStorageDriver(DriverConfig(name="q"), storage_path=target)
    assert str(target) in str(info.value) and "not a directory" in str(info.value)


def test_advice_fits_the_cause(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    locked = str(_storage_error(path, sqlite3.OperationalError("database is locked")))
    assert "damaged" not in locked and "busy_timeout" in locked and str(path) in locked
    damaged = str(_storage_error(path, sqlite3.DatabaseError("file is not a database")))
    assert "damaged" in damaged or "backup" in damaged
    cannot_open = str(_storage_error(path, sqlite3.OperationalError("unable to open database file")))
    assert "damaged" not in cannot_open and "permission" in cannot_open


def test_a_garbage_journal_is_not_reported_as_a_torn_last_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "q"
    FileStorageDriver(DriverConfig(name="q"), storage_path=path)
    journal = next(path.glob("journal-*.log"))
    journal.write_bytes(b"\x00\x17garbage that is no journal at all, and no newline")
    FileStorageDriver(DriverConfig(name="q"), storage_path=path)
    text = caplog.text
    assert "torn" not in text and "not a journal line" in text
    kept = list(path.glob("journal-*.log.corrupt-*"))  # moved aside, never just cut off
    assert kept and b"garbage" in kept[0].read_bytes()
