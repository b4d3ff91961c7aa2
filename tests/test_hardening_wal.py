"""Issue 10: damage in the SQLite WAL silently drops fsynced jobs; the queue refuses to open it.

The WAL is a real one: a process dispatches five batches (five committed, fsynced transactions)
and is killed with SIGKILL, so its WAL is never checkpointed. The damage is one flipped byte.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from khadem_lab import DriverConfig, JobRegistry, Simulation, SQLiteDriver, StorageError
from khadem_lab.drivers.sqlitewal import MAGIC_BIG, check_wal

from .support import Invoice

pytestmark = pytest.mark.realtime

WRITER = """
import asyncio, os, signal, sys
from khadem_lab import QueueManager, register_queue_jobs
from tests.support import Invoice

async def main():
    register_queue_jobs([Invoice])
    queue = {"default": "q", "drivers": {"q": {"driver": "sqlite", "path": sys.argv[1]}}}
    qm = QueueManager({"queue": queue})
    qm.load_from_config()
    for batch in range(5):
        await qm.dispatch_batch([Invoice(batch * 10 + n) for n in range(10)])
    os.kill(os.getpid(), signal.SIGKILL)  # a crash: the WAL is left as it is, not checkpointed

asyncio.run(main())
"""


def crashed_queue(tmp_path: Path) -> Path:
    path = tmp_path / "q.sqlite3"
    result = subprocess.run(
        [sys.executable, "-c", WRITER, str(path)],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
        timeout=60,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    assert Path(f"{path}-wal").stat().st_size > 0
    return path


def frames(wal: bytes) -> list[tuple[int, bool]]:
    """(byte offset, is a commit) of each frame, read straight from the format."""
    (page_size,) = struct.unpack(">I", wal[8:12])
    size = 24 + page_size
    return [
        (at, struct.unpack(">I", wal[at + 4 : at + 8])[0] != 0) for at in range(32, len(wal) - size + 1, size)
    ]


def rows_sqlite_sees(path: Path, tmp_path: Path) -> int:
    """How many jobs SQLite itself reads from a copy of the files (it reports no error)."""
    copy = tmp_path / "copy" / path.name
    copy.parent.mkdir(parents=True)
    shutil.copy(path, copy)
    shutil.copy(f"{path}-wal", f"{copy}-wal")
    with sqlite3.connect(copy) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()
    return int(count)


def open_queue(sim: Simulation, path: Path) -> SQLiteDriver:
    registry = JobRegistry()
    registry.register(Invoice)
    return SQLiteDriver(DriverConfig(name="q"), path=path, clock=sim.clock, registry=registry)


def damage_the_last_transactions(path: Path, count: int) -> int:
    """Flip a byte in the page of the first frame of the ``count``-th last transaction (so that it
    and the ``count - 1`` after it are dropped); returns that frame's number (1-based)."""
    wal_file = Path(f"{path}-wal")
    wal = bytearray(wal_file.read_bytes())
    listed = frames(bytes(wal))
    commits = [n for n, (_at, commit) in enumerate(listed) if commit]
    target = commits[-count - 1] + 1  # the frame after the commit before it
    at = listed[target][0]
    wal[at + 24 + 100] ^= 0xFF
    wal_file.write_bytes(bytes(wal))
    return target + 1


def test_sqlite_alone_silently_drops_the_transactions_after_a_damaged_frame(tmp_path: Path) -> None:
    """The fault, shown: SQLite reads the damaged WAL without an error and loses fsynced jobs."""
    path = crashed_queue(tmp_path)
    assert rows_sqlite_sees(path, tmp_path / "before") == 50
    damage_the_last_transactions(path, 3)
    assert rows_sqlite_sees(path, tmp_path / "after") == 20  # 30 fsynced jobs gone, no error


def test_a_damaged_wal_is_refused_naming_the_file_and_what_would_be_dropped(tmp_path: Path) -> None:
    path = crashed_queue(tmp_path)
    bad_frame = damage_the_last_transactions(path, 3)
    wal = Path(f"{path}-wal")
    before = (path.read_bytes(), wal.read_bytes())
    with Simulation() as sim, pytest.raises(StorageError) as info:
        open_queue(sim, path)
    message = str(info.value)
    assert str(wal) in message and f"frame {bad_frame} " in message
    assert "3 committed transaction(s)" in message  # the last three batches
    assert "without an error" in message and "wal_checkpoint(TRUNCATE)" in message
    assert (path.read_bytes(), wal.read_bytes()) == before  # nothing more lost: left as it was
    # The advice works: a checkpoint keeps the transactions before the damage, then it opens
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with Simulation() as sim:
        driver = open_queue(sim, path)
        assert sim.run(driver.size()) == 20  # the first two batches; the others are gone, as reported
        sim.run(driver.dispose())


def test_an_undamaged_wal_and_a_torn_last_transaction_open_as_usual(tmp_path: Path) -> None:
    path = crashed_queue(tmp_path)
    assert check_wal(Path(f"{path}-wal")) is None
    # A crash in the middle of writing the last transaction: its last frame is cut short. It was
    # never acknowledged, and nothing committed follows it: not damage.
    wal = Path(f"{path}-wal")
    os.truncate(wal, wal.stat().st_size - 1000)
    assert check_wal(wal) is None
    with Simulation() as sim:
        driver = open_queue(sim, path)
        assert sim.run(driver.size()) == 40
        sim.run(driver.dispose())


def test_a_big_endian_wal_is_checked_too(tmp_path: Path) -> None:
    """The byte order of the checksums is the magic's: a WAL written big-endian, re-encoded here
    (SQLite reads it: all 50 jobs), is checked the same way."""
    path = crashed_queue(tmp_path)
    wal_file = Path(f"{path}-wal")
    wal_file.write_bytes(to_big_endian(wal_file.read_bytes()))
    assert rows_sqlite_sees(path, tmp_path / "be") == 50
    assert check_wal(wal_file) is None
    damage_the_last_transactions(path, 2)
    damage = check_wal(wal_file)
    assert damage is not None and damage.dropped_commits == 2


def to_big_endian(wal: bytes) -> bytes:
    """The same WAL with big-endian checksums (magic 0x377f0683), every checksum recomputed."""

    def checksum(data: bytes, s0: int, s1: int) -> tuple[int, int]:
        words = struct.unpack(f">{len(data) // 4}I", data)
        for i in range(0, len(words), 2):
            s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
            s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
        return s0, s1

    out = bytearray(wal)
    out[0:4] = struct.pack(">I", MAGIC_BIG)
    s = checksum(bytes(out[:24]), 0, 0)
    out[24:32] = struct.pack(">2I", *s)
    for at, _commit in frames(wal):
        (page_size,) = struct.unpack(">I", wal[8:12])
        s = checksum(bytes(out[at : at + 8]) + bytes(out[at + 24 : at + 24 + page_size]), *s)
        out[at + 16 : at + 24] = struct.pack(">2I", *s)
    return bytes(out)
