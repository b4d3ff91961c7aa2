"""What a flush to disk costs on this machine: the ceiling of any queue that flushes every enqueue.

    .venv/bin/python bench/fsync_probe.py --k 2000

In a fresh temporary directory (``tempfile.mkdtemp``: the same disk as the queues), K times each:

  fsync       append 64 bytes to a file with ``os.write``, then ``os.fsync``       (one timing each)
  fdatasync   the same with ``os.fdatasync``
  wal_full    one ``INSERT`` of a 64-byte blob as its own transaction (autocommit), SQLite WAL
              journal, ``PRAGMA synchronous = FULL``: the WAL is fsynced at every commit
  wal_normal  the same with ``synchronous = NORMAL``: no fsync at commit (only at checkpoints)
  wal_default the same with the synchronous level a fresh connection has (no PRAGMA), which is
              what persist-queue and Huey use
Each WAL probe first makes 1,100 untimed commits, so the timed ones run in the steady state of a
long-lived queue: past the first auto-checkpoint (1,000 pages), the WAL file is overwritten from
its start instead of growing, and the timed commits include the checkpoints that come due.

Per probe: the median and 90th percentile latency in microseconds and the rate (K / total time).
Also the synchronous level of a fresh connection before and after ``journal_mode = WAL`` (0 OFF,
1 NORMAL, 2 FULL, 3 EXTRA), and the SQLite library version. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DATA = b"x" * 63 + b"\n"
WAL_WARMUP = 1100  # untimed commits first: the default auto-checkpoint runs at 1,000 WAL pages


def timed(k: int, step: Callable[[], None]) -> dict[str, float]:
    perf = time.perf_counter
    lat = []
    t0 = perf()
    for _ in range(k):
        s = perf()
        step()
        lat.append(perf() - s)
    total = perf() - t0
    lat.sort()
    return {
        "median_us": round(statistics.median(lat) * 1e6, 1),
        "p90_us": round(lat[int(0.9 * (k - 1))] * 1e6, 1),
        "rate_per_s": round(k / total, 1),
    }


def file_probe(directory: Path, k: int, flush: Callable[[int], None]) -> dict[str, float]:
    fd = os.open(directory / f"probe-{flush.__name__}", os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    try:

        def step() -> None:
            os.write(fd, DATA)
            flush(fd)

        return timed(k, step)
    finally:
        os.close(fd)


def wal_probe(directory: Path, k: int, synchronous: str | None) -> dict[str, float]:
    conn = sqlite3.connect(directory / f"probe-{synchronous}.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        if synchronous is not None:
            conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        insert = conn.execute
        for _ in range(WAL_WARMUP):  # past the first checkpoint: the WAL is reused, not grown
            insert("INSERT INTO t (data) VALUES (?)", (DATA,))

        def step() -> None:
            insert("INSERT INTO t (data) VALUES (?)", (DATA,))

        return timed(k, step)
    finally:
        conn.close()


def default_synchronous(directory: Path) -> dict[str, int]:
    conn = sqlite3.connect(directory / "levels.db", isolation_level=None)
    try:
        before = conn.execute("PRAGMA synchronous").fetchone()[0]
        conn.execute("PRAGMA journal_mode = WAL")
        after = conn.execute("PRAGMA synchronous").fetchone()[0]
    finally:
        conn.close()
    return {"rollback_journal": int(before), "wal": int(after)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=2000, help="flushes per probe")
    p.add_argument("--dir", default=None, help="parent of the temporary directory")
    a = p.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="khadem-fsync-", dir=a.dir))
    try:
        record: dict[str, Any] = {
            "bench": "fsync_probe",
            "k": a.k,
            "fsync": file_probe(directory, a.k, os.fsync),
            "fdatasync": file_probe(directory, a.k, os.fdatasync),
            "wal_full": wal_probe(directory, a.k, "FULL"),
            "wal_normal": wal_probe(directory, a.k, "NORMAL"),
            "wal_default": wal_probe(directory, a.k, None),
            "default_synchronous": default_synchronous(directory),
            "sqlite_version": sqlite3.sqlite_version,
            "python": platform.python_version(),
            "loadavg1": round(os.getloadavg()[0], 2),
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
