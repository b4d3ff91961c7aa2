"""What the benchmark scripts share: medians, the git state of the measured code, the run's
metadata, and the no-op job the throughput scripts dispatch."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from khadem_lab import QueueJob, register_queue_jobs

ROOT = Path(__file__).resolve().parent.parent


def summary(values: list[float]) -> dict[str, float]:
    """Median, min and max of one figure over the rounds."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def git_head() -> str | None:
    """The commit measured, with "+dirty" if khadem_lab/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "khadem_lab"], capture_output=True, text=True, cwd=ROOT
        )
    except OSError:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def run_meta(script: str, started: float) -> dict[str, Any]:
    """The metadata every runner records: when, how long, the command, the machine, the code."""
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "command": " ".join([".venv/bin/python", f"bench/{script}", *sys.argv[1:]]),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "git": git_head(),
    }


def json_records(cmd: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Run one benchmark script in a fresh interpreter; the JSON records it printed (its stdout
    lines that start with ``{``). A failed run stops the benchmark with the script's stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]


def run_json(cmd: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None) -> dict[str, Any]:
    """:func:`json_records`' last record: the one a benchmark script prints at its end."""
    return json_records(cmd, cwd, env)[-1]


def report(lines: list[str], name: str, write: bool) -> None:
    """Print a markdown report; with ``write``, also save it as ``bench/results/NAME``."""
    text = "\n".join(lines) + "\n"
    print(text)
    if write:
        (ROOT / "bench" / "results" / name).write_text(text)


@dataclass
class NoopJob(QueueJob):
    """The no-op job of the throughput benchmarks: one int field, ``handle()`` returns at once."""

    i: int

    async def handle(self) -> None:
        return None


register_queue_jobs([NoopJob])
