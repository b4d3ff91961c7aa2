"""Helpers for the command-line tests: run the real ``khadem-lab`` command in subprocesses.

Every wait is on observable state (a log line, the queue's counts, a process's exit) with a
generous timeout, never a sleep of fixed length: the tests must not depend on machine load.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from khadem_lab import QueueJob, QueueManager

from .conftest import REDIS_URL, redis_queue_name

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120.0  # seconds: generous, for a loaded machine; a passing test takes a fraction


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def khadem(
    *args: str, timeout: float = TIMEOUT, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m khadem_lab ARGS`` to its end (from the checkout, so ``tests.cli_jobs`` imports)."""
    return subprocess.run(
        [sys.executable, "-m", "khadem_lab", *args],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )


def start(*args: str, stderr: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m khadem_lab ARGS`` in the background, its stderr (the log) to a file."""
    with stderr.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "khadem_lab", *args],
            cwd=ROOT,
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def wait_until(check: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def write_config(tmp_path: Path, kind: str, **extra: Any) -> Path:
    """A config file with one driver ``q`` of type ``kind`` (a fresh Redis prefix per test)."""
    entry: dict[str, Any] = {"driver": kind, "poll_interval": 0.05, **extra}
    if kind == "redis":
        entry.update(url=REDIS_URL, queue_name=redis_queue_name(tmp_path.name[:20]))
    elif kind == "sqlite":
        entry["path"] = str(tmp_path / "queue.sqlite3")
    elif kind == "file":
        entry["path"] = str(tmp_path / "queue")
    path = tmp_path / "queue.json"
    path.write_text(json.dumps({"queue": {"default": "q", "drivers": {"q": entry}}}))
    return path


def dispatch(config: Path, jobs: list[QueueJob], delay: float | None = None) -> list[str]:
    async def run() -> list[str]:
        qm = QueueManager(config)
        qm.load_from_config()
        try:
            return await qm.dispatch_batch(jobs, delay=delay)
        finally:
            await qm.dispose()

    return asyncio.run(run())


def stats(config: Path) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        qm = QueueManager(config)
        qm.load_from_config()
        try:
            return await qm.driver.get_stats()
        finally:
            await qm.dispose()

    return asyncio.run(run())


def log_lines(log: Path) -> list[tuple[str, str, int]]:
    """(what, name, pid) per line of a job log written by tests.cli_jobs."""
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        what, name, pid = line.split()
        rows.append((what, name, int(pid)))
    return rows
