"""Memory of a long run's history, measured for real: the EventLog and the frames of N jobs.

    .venv/bin/python bench/lab_memory.py --jobs 1000000      # about 6 minutes here

The scenario of ``bench/lab_frames.py`` (Poisson arrivals, two job types, 5 % flaky calls retried
after 30 s, 4 workers x 8 slots), its virtual duration scaled with ``--jobs`` so that the load
stays the same (10 hours per 100,000 jobs). Two runs, each in a fresh interpreter:

* ``rss``: the simulation, then the five frames of :mod:`khadem_lab.lab.frames` built and all
  kept; the process's peak resident set (``resource.getrusage``, `ru_maxrss`) after each step.
  The peak covers everything the process holds: the interpreter, numpy / pandas, the queue's own
  state, the log, the frames and the temporaries of building them.
* ``traced``: the same under ``tracemalloc``, started before the simulation: the bytes the log
  keeps (traced memory with the log, minus the same after it is cleared, over its events: bytes
  per stored event), the five frames' bytes (traced memory once all are built, minus before),
  and the traced peak while building them (above the memory held before).

The target (issue 8): the log and its frames of a 1,000,000-job run fit in 1 GB. Writes
``bench/results/lab_memory.json`` and ``.md`` (``--write``), prints a summary and one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from lab_frames import FRAMES, scenario

from khadem_lab.lab import frames

RESULTS = Path(__file__).parent / "results"


def hours_for(jobs: int) -> float:
    return 10 * jobs / 100_000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux: MiB


def rss(jobs: int) -> dict[str, Any]:
    began = time.perf_counter()
    result = scenario(jobs, hours_for(jobs)).run(until=timedelta(hours=hours_for(jobs)))
    out: dict[str, Any] = {"jobs": result.arrivals, "events": len(result.log)}
    out["simulate_s"] = round(time.perf_counter() - began, 1)
    out["peak_rss_after_simulation_mb"] = round(peak_rss_mb())
    began = time.perf_counter()
    built = {name: getattr(frames, name)(result.log) for name in FRAMES}
    out["frames_s"] = round(time.perf_counter() - began, 1)
    out["peak_rss_after_frames_mb"] = round(peak_rss_mb())
    out["frame_rows"] = {name: len(frame) for name, frame in built.items()}
    return out


def traced(jobs: int) -> dict[str, Any]:
    gc.collect()
    tracemalloc.start()
    result = scenario(jobs, hours_for(jobs)).run(until=timedelta(hours=hours_for(jobs)))
    events = len(result.log)
    gc.collect()
    with_log = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    built = {name: getattr(frames, name)(result.log) for name in FRAMES}
    gc.collect()
    with_frames, peak = tracemalloc.get_traced_memory()
    each = {}
    for name in FRAMES:
        before = tracemalloc.get_traced_memory()[0]
        del built[name]
        gc.collect()
        each[name] = round((before - tracemalloc.get_traced_memory()[0]) / 1e6, 1)
    result.log.clear()
    gc.collect()
    without_log = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    log_bytes = with_log - without_log
    frame_bytes = with_frames - with_log
    return {
        "bytes_per_event": round(log_bytes / events, 1),
        "log_mb": round(log_bytes / 1e6, 1),
        "frames_mb": round(frame_bytes / 1e6, 1),
        "frames_mb_each": each,
        "log_plus_frames_mb": round((log_bytes + frame_bytes) / 1e6, 1),
        "traced_peak_building_frames_mb": round((peak - without_log) / 1e6, 1),
    }


def child(phase: str, jobs: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--jobs", str(jobs), "--phase", phase]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def markdown(report: dict[str, Any]) -> str:
    fits = "yes" if report["log_plus_frames_mb"] <= 1000 else "no"
    peak_fits = "yes" if report["traced_peak_building_frames_mb"] <= 1000 else "no"
    rss_fits = "yes" if report["peak_rss_after_frames_mb"] < 1000 else "no"
    rows = report["frame_rows"]
    each = report["frames_mb_each"]
    lines = [
        f"# EventLog and frames memory ({report['when']}, git {report['git']})",
        "",
        f"`{report['command']}`: Python {report['python']}, {report['jobs']:,} jobs over "
        f"{report['hours']:g} virtual hours, {report['events']:,} events "
        f"({report['events'] / report['jobs']:.2f} per job).",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| **bytes per stored event** (tracemalloc: with the log minus after clearing it) "
        f"| **{report['bytes_per_event']}** |",
        f"| log, MB | {report['log_mb']} |",
        f"| five frames, all kept, MB | {report['frames_mb']} |",
        f"| **log + frames, MB** (target <= 1000) | **{report['log_plus_frames_mb']}** ({fits}) |",
        f"| **traced peak while building the frames** (log and frames included), MB (target <= 1000) "
        f"| **{report['traced_peak_building_frames_mb']}** ({peak_fits}) |",
        f"| peak RSS after the simulation, MiB (whole process) | {report['peak_rss_after_simulation_mb']} |",
        f"| **peak RSS after the five frames**, MiB (whole process; target < 1000) "
        f"| **{report['peak_rss_after_frames_mb']}** ({rss_fits}) |",
        f"| simulation, s (without tracemalloc) | {report['simulate_s']} |",
        f"| five frames, s | {report['frames_s']} |",
        "",
        "MB: 10^6 bytes (tracemalloc); MiB: 2^20 bytes (`ru_maxrss`, KiB on Linux, / 1024).",
        "",
        "| frame | rows | MB |",
        "|---|---:|---:|",
        *(f"| {name} | {rows[name]:,} | {each[name]} |" for name in FRAMES),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--phase", choices=("rss", "traced"), help="run one phase here (internal)")
    parser.add_argument("--write", action="store_true", help="write bench/results/lab_memory.{json,md}")
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(rss(args.jobs) if args.phase == "rss" else traced(args.jobs)))
        return
    report: dict[str, Any] = {
        "bench": "lab_memory",
        "python": platform.python_version(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "command": "python " + " ".join(["bench/lab_memory.py", *sys.argv[1:]]),
        "hours": hours_for(args.jobs),
    }
    report.update(child("rss", args.jobs))
    report.update(child("traced", args.jobs))
    text = markdown(report)
    print(text)
    print(json.dumps(report))
    if args.write:
        (RESULTS / "lab_memory.json").write_text(json.dumps(report, indent=1) + "\n")
        (RESULTS / "lab_memory.md").write_text(text)


if __name__ == "__main__":
    main()
